"""The teaching model's training text: a deterministic synthetic corpus, and the lines it holds out.

Contract:
- `corpus_lines(n, seed)` returns `n` lines of plain text, the same for the same arguments on any
  machine (only `random.Random(seed)` and fixed tables are used). Each line is one of the KINDS:

      digits    "41 42 43 44 45 46"                       counting, 6 to 160 numbers of 0..999
      words     "nineteen twenty twenty one twenty two"   counting in words, one..ninety nine
      alphabet  "U V W X Y Z"                             from a letter to Z
      days      "Friday Saturday Sunday Monday ..."       round the week, 6 to 160 days
      months    "October November December January ..."  round the year, 6 to 160 months
      times     "7 x 4 = 28, 7 x 5 = 35, ..., 7 x 12 = 84"  a times table, from a row to 12
      sentence  "Request 12 is preempted, so its blocks are freed and it waits in the queue."
      fact      "A block table maps logical blocks to physical blocks."  (also as question and
                answer, and as a chat turn)

  `vocabulary()` lists every word the generator can emit (the tokenizer is trained on it too).

- Held out (never the start of a training line, so a test that prompts with one asks for
  something the model did not see begin a line): counting from a number whose last digit is 7,
  the alphabet from HELD_OUT_LETTERS, the week from HELD_OUT_DAYS, the year from HELD_OUT_MONTHS,
  table n from HELD_OUT_TIMES[n], and the templated sentences about a number ending in 7 (no
  sentence of the corpus names one). The steps inside them (46 -> 47 -> 48, "Tuesday Wednesday")
  do occur: a successor cannot be learned otherwise.
- `held_out_prompts(kind)` gives a dozen (prompt, continuation) pairs of each held-out kind; the
  continuation is what the corpus's own rules say comes next.

Nothing here imports torch or tokenizers; `teaching.py` trains the tokenizer and the model on it.
"""

from __future__ import annotations

import random

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January February March April May June July August September October November December"
).split()
DIGITS_MAX, WORDS_MAX, TABLE_MAX = 999, 99, 12

HELD_OUT_LETTERS = tuple("DGJMPS")
HELD_OUT_DAYS = ("Wednesday", "Saturday")
HELD_OUT_MONTHS = ("March", "July", "November")
# Table n never starts at row HELD_OUT_TIMES[n]. Not at the square n x n: a square never seen at the
# start of a line is a weak spot of this small model (3 x 3 and 8 x 8 failed in two of four runs).
HELD_OUT_TIMES = {n: n * 7 % 10 + 2 + (n * 7 % 10 + 2 == n) for n in range(1, TABLE_MAX + 1)}

# Sentences with a number slot "{a}". A held-out test prompts with the text before "|" (the marker
# is not part of the sentence) and expects the rest.
TEMPLATES = (
    "Request {a} is preempted, so | its blocks are freed and it waits in the queue.",
    "Sequence {a} needs a new block, so the | block manager takes one from the free list.",
    "Block {a} is full, so the engine | hashes its tokens and caches it.",
    "Request {a} finishes, and | its blocks go back to the free list.",
    "Sequence {a} shares a cached block, so | it skips part of its prefill.",
    "Step {a} schedules the running sequences | first and then the waiting ones.",
)

# Facts about the engine, each with the question it answers.
FACTS = (
    ("What is a block table?", "A block table maps logical blocks to physical blocks."),
    ("What is the KV cache?", "The KV cache stores the keys and values of every token."),
    ("What is a KV cache?", "A KV cache stores the keys and values of every token."),
    ("Why page the KV cache?", "Paging the KV cache wastes only the tail of the last block."),
    ("When is a sequence preempted?", "A sequence is preempted when no free block is left."),
    ("What does the scheduler do?", "The scheduler decides which sequences run at every step."),
    ("What is prefix caching?", "Prefix caching reuses the blocks of a shared prompt."),
    ("What is chunked prefill?", "Chunked prefill splits a long prompt into pieces."),
    ("What is a prefill?", "A prefill runs the whole prompt through the model at once."),
    ("What is a decode step?", "A decode step computes one new token for each sequence."),
    ("What does the sampler do?", "The sampler turns the logits into the next token."),
    ("What is greedy decoding?", "Greedy decoding always takes the most likely token."),
    ("What does temperature do?", "Temperature divides the logits before the softmax."),
    ("What is continuous batching?", "Continuous batching lets new requests join the batch."),
    ("What is a CUDA graph?", "A CUDA graph replays the decode step in one launch."),
    ("What is tensor parallelism?", "Tensor parallelism splits every weight matrix."),
    ("What is the slot mapping?", "The slot mapping says where each new key is stored."),
    ("What is the token budget?", "The token budget limits the tokens of one step."),
    ("What is a reference count?", "A reference count tells how many sequences share a block."),
    ("Which block is evicted first?", "The least recently used block is evicted first."),
    ("What does the model runner do?", "The model runner turns a batch into logits."),
    ("What does the block manager do?", "The block manager hands out and frees blocks."),
    ("What is a hash chain?", "A hash chain gives each full block a hash of its prefix."),
    ("What is an inference engine?", "An inference engine turns prompts into text."),
)
CHAT = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>"

# Share of the lines of each kind (digit lines are the longest, so they hold the most tokens).
MIX = dict(digits=2, words=2, alphabet=2, days=1, months=1, times=5, sentence=4, fact=3)
KINDS = tuple(MIX)
MAX_RUN = 160  # the longest counting / week / year line, in items


def number_words(n: int) -> str:
    """1 -> "one", 42 -> "forty two" (no hyphen: one word token each)."""
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] + (f" {ONES[ones]}" if ones else "")


def held_out_number(n: int) -> bool:
    return n % 10 == 7


def _run(rng: random.Random) -> int:
    """How many items a counting line holds. Long lines keep long prompts legible; no line stops
    before 6 items, so an early stop is never likely enough to beat the next number."""
    return rng.randint(6, MAX_RUN)


def _start(rng: random.Random, low: int, high: int) -> int:
    while held_out_number(n := rng.randint(low, high)):
        pass
    return n


def _cycle(items: tuple[str, ...], start: int, count: int) -> str:
    return " ".join(items[(start + i) % len(items)] for i in range(count))


def _times(n: int, first: int, last: int = TABLE_MAX) -> str:
    return ", ".join(f"{n} x {b} = {n * b}" for b in range(first, last + 1))


def _sentence(template: str, a: int) -> str:
    return template.replace("| ", "").format(a=a)


def _line(kind: str, rng: random.Random) -> str:
    if kind == "digits":  # a third count from a small number, as people do
        s = _start(rng, 0, 30 if rng.random() < 0.3 else DIGITS_MAX - 2)
        return " ".join(str(i) for i in range(s, min(s + _run(rng), DIGITS_MAX + 1)))
    if kind == "words":
        s = _start(rng, 1, WORDS_MAX - 2)
        return " ".join(number_words(i) for i in range(s, min(s + _run(rng), WORDS_MAX + 1)))
    if kind == "alphabet":
        s = rng.choice([x for x in LETTERS[:-2] if x not in HELD_OUT_LETTERS])
        return " ".join(LETTERS[LETTERS.index(s) :])
    if kind in ("days", "months"):
        items, held = (DAYS, HELD_OUT_DAYS) if kind == "days" else (MONTHS, HELD_OUT_MONTHS)
        s = rng.choice([i for i, x in enumerate(items) if x not in held])
        return _cycle(items, s, _run(rng))
    if kind == "times":
        n = rng.randint(1, TABLE_MAX)
        first = rng.choice([b for b in range(1, TABLE_MAX) if b != HELD_OUT_TIMES[n]])
        return _times(n, first)
    if kind == "sentence":
        return _sentence(rng.choice(TEMPLATES), _start(rng, 0, DIGITS_MAX))
    question, answer = rng.choice(FACTS)
    form = rng.randrange(3)
    return (answer, f"{question} {answer}", CHAT.format(q=question, a=answer))[form]


def corpus_lines(n: int, seed: int = 0) -> list[str]:
    """`n` training lines, kinds drawn with the weights in MIX."""
    rng = random.Random(seed)
    kinds = rng.choices(KINDS, weights=[MIX[k] for k in KINDS], k=n)
    return [_line(kind, rng) for kind in kinds]


def vocabulary() -> str:
    """Every word the generator can emit, once, so that the tokenizer knows the rare ones too."""
    words = [str(i) for i in range(DIGITS_MAX + 1)] + ONES + TENS[2:]
    words += [*LETTERS, *DAYS, *MONTHS, "x", "=", ",", "user", "assistant"]
    words += [_sentence(t, 1) for t in TEMPLATES] + [f"{q} {a}" for q, a in FACTS]
    return " ".join(words)


def held_out_prompts(kind: str) -> list[tuple[str, str]]:
    """A dozen (prompt, expected continuation) pairs of `kind` that no training line starts with."""
    if kind == "digits":
        starts = [7, 17, 47, 97, 107, 227, 307, 417, 537, 647, 777, 987]
        return [_split([str(i) for i in range(s, s + 10)], 4) for s in starts]
    if kind == "words":
        pairs = [(s, 3) for s in range(7, 88, 10)] + [(17, 2), (47, 4), (77, 2)]
        return [(_words(s, k), _words(s + k, 5)) for s, k in pairs]
    if kind == "alphabet":
        pairs = [(LETTERS.index(x), k) for x in HELD_OUT_LETTERS for k in (1, 3)]
        return [_split(list(LETTERS[s : s + k + 5]), k) for s, k in pairs]
    if kind in ("days", "months"):
        items, held = (DAYS, HELD_OUT_DAYS) if kind == "days" else (MONTHS, HELD_OUT_MONTHS)
        lengths = range(1, 7) if kind == "days" else range(1, 5)
        pairs = [(items.index(x), k) for x in held for k in lengths]
        return [_split(_cycle(items, s, k + 6).split(), k) for s, k in pairs]
    if kind == "times":
        return [
            (f"{n} x {b} =", f"{n * b}, {n} x {b + 1} = {n * (b + 1)}")
            for n, b in HELD_OUT_TIMES.items()
        ]
    if kind == "sentence":
        values = [7, 17, 57, 117, 237, 407, 567, 607, 727, 847, 907, 997]
        pairs = [(TEMPLATES[i % len(TEMPLATES)].split(" | "), a) for i, a in enumerate(values)]
        return [(head.format(a=a), tail) for (head, tail), a in pairs]
    raise ValueError(f"no held-out prompts of kind {kind!r}; kinds: {HELD_OUT_KINDS}")


HELD_OUT_KINDS = ("digits", "words", "alphabet", "days", "months", "times", "sentence")


def _split(items: list[str], k: int) -> tuple[str, str]:
    return " ".join(items[:k]), " ".join(items[k:])


def _words(start: int, count: int) -> str:
    return " ".join(number_words(i) for i in range(start, start + count))
