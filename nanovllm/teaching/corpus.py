"""The teaching model's training text: a deterministic synthetic corpus, and what it leaves out.

Contract:
- `corpus_stream(seed, mix)` yields lines of plain text without end, the same for the same
  arguments on any machine (only `random.Random(seed)` and fixed tables are used);
  `corpus_lines(n, seed, mix)` is its first `n`. Each line is one of KINDS:

      digits    "41 42 43 44 45 46"                       counting, 6 to 160 numbers of 0..999
      words     "nineteen twenty twenty one twenty two"   counting in words, one..ninety nine
      alphabet  "U V W X Y Z" / "f g h i ... z"           from a letter to the end, either case
      days      "Friday Saturday Sunday Monday ..."       round the week, 6 to 160 days
      months    "October November December January ..."  round the year, 6 to 160 months
      times     "7 x 4 = 28, 7 x 5 = 35, ..., 7 x 12 = 84"  a times table, from a row to 12
      sentence  "Request 12 is preempted, so its blocks are freed and it waits in the queue."
      fact      "A block table maps logical blocks to physical blocks."  (also after one of its
                questions, "What's prefix caching? Prefix caching ...", and as a chat turn)

  `vocabulary()` lists every word the generator can emit (the tokenizer is trained on it).
- What no line holds (the held-out set, `held_out.py`, prompts with exactly these):
    counting (digits, words) never starts at a number ending in 7;
    the alphabet never starts at a letter of HELD_OUT_LETTERS (lowercase and capitals apart);
    the week and the year never start at HELD_OUT_DAYS / HELD_OUT_MONTHS;
    table n never starts at row b when {n, b} is a pair of HELD_OUT_TIMES (both orders);
    no sentence names a number ending in 7;
    no line holds a held-out wording of a question (`Fact.held_out()`).
  The steps inside them do occur (46 -> 47 -> 48, "Tuesday Wednesday", "7 x 4 = 28"): a successor
  or a product cannot be learned otherwise. The facts and question wordings are in `facts.py`.

Nothing here imports torch or tokenizers; `train.py` trains the tokenizer and the model on it.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

from nanovllm.teaching.facts import CHAT, FACTS

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
CAPITALS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
LOWERCASE = tuple("abcdefghijklmnopqrstuvwxyz")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January February March April May June July August September October November December"
).split()
DIGITS_MAX, WORDS_MAX, TABLE_MAX = 999, 99, 12

HELD_OUT_LETTERS = frozenset("aehknrv" + "CGKMPTW")
HELD_OUT_DAYS = ("Wednesday", "Saturday")
HELD_OUT_MONTHS = ("March", "July", "November")
# {n, b}: table n never starts at row b, nor table b at row n. A 3-regular graph on 1..12 (a ring
# and its diameters), so each table keeps 8 of its 11 starting rows for training. No squares: a
# square never seen at the start of a line was a weak spot of the first teaching model.
HELD_OUT_TIMES = frozenset(
    frozenset({a % 12 + 1, (a + d) % 12 + 1}) for a in range(12) for d in (1, 6)
)

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

# Share of the lines of each kind (digit lines are the longest, so they hold the most tokens).
MIX = dict(digits=2, words=2, alphabet=3, days=1, months=1, times=5, sentence=4, fact=5)
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


def held_out_row(n: int, b: int) -> bool:
    """Does table n never start at row b?"""
    return frozenset({n, b}) in HELD_OUT_TIMES


def _run(rng: random.Random) -> int:
    """How many items a counting line holds. Long lines keep long prompts legible; no line stops
    before 6 items, so an early stop is never likely enough to beat the next number."""
    return rng.randint(6, MAX_RUN)


def _start(rng: random.Random, low: int, high: int) -> int:
    while held_out_number(n := rng.randint(low, high)):
        pass
    return n


def cycle(items: tuple[str, ...], start: int, count: int) -> str:
    return " ".join(items[(start + i) % len(items)] for i in range(count))


def times(n: int, first: int, last: int = TABLE_MAX) -> str:
    return ", ".join(f"{n} x {b} = {n * b}" for b in range(first, last + 1))


def sentence(template: str, a: int) -> str:
    return template.replace("| ", "").format(a=a)


def _line(kind: str, rng: random.Random) -> str:
    if kind == "digits":  # a third count from a small number, as people do
        s = _start(rng, 0, 30 if rng.random() < 0.3 else DIGITS_MAX - 2)
        return " ".join(str(i) for i in range(s, min(s + _run(rng), DIGITS_MAX + 1)))
    if kind == "words":
        s = _start(rng, 1, WORDS_MAX - 2)
        return " ".join(number_words(i) for i in range(s, min(s + _run(rng), WORDS_MAX + 1)))
    if kind == "alphabet":
        letters = LOWERCASE if rng.random() < 0.5 else CAPITALS
        s = rng.choice([i for i, x in enumerate(letters[:-2]) if x not in HELD_OUT_LETTERS])
        return " ".join(letters[s:])
    if kind in ("days", "months"):
        items, held = (DAYS, HELD_OUT_DAYS) if kind == "days" else (MONTHS, HELD_OUT_MONTHS)
        s = rng.choice([i for i, x in enumerate(items) if x not in held])
        return cycle(items, s, _run(rng))
    if kind == "times":
        n = rng.randint(1, TABLE_MAX)
        rows = [b for b in range(1, TABLE_MAX + 1) if not held_out_row(n, b)]
        return times(n, rng.choice(rows))  # from row 12 too: "6 x 12 = 72" is a whole line
    if kind == "sentence":
        return sentence(rng.choice(TEMPLATES), _start(rng, 0, DIGITS_MAX))
    fact = rng.choice(FACTS)
    question = rng.choice(fact.trained())
    return rng.choice(
        (fact.answer, f"{question} {fact.answer}", CHAT.format(q=question, a=fact.answer))
    )


def corpus_stream(seed: int = 0, mix: dict[str, float] | None = None) -> Iterator[str]:
    """Training lines without end, kinds drawn with the weights in `mix` (default MIX). Any
    prefix is the same however much is read: the trainer takes just the lines it needs."""
    mix = mix or MIX
    rng = random.Random(seed)
    weights = [mix.get(k, 0) for k in KINDS]
    while True:
        yield _line(rng.choices(KINDS, weights=weights)[0], rng)


def corpus_lines(n: int, seed: int = 0, mix: dict[str, float] | None = None) -> list[str]:
    """The first `n` lines of `corpus_stream(seed, mix)`."""
    return list(itertools.islice(corpus_stream(seed, mix), n))


def vocabulary() -> str:
    """Every word the generator can emit, once, so that the tokenizer knows the rare ones too."""
    words = [str(i) for i in range(DIGITS_MAX + 1)] + ONES + TENS[2:]
    words += [*CAPITALS, *LOWERCASE, *DAYS, *MONTHS, "x", "=", ",", "user", "assistant"]
    words += [sentence(t, 1) for t in TEMPLATES]
    words += [f"{q} {fact.answer}" for fact in FACTS for q in fact.trained()]
    return " ".join(words)
