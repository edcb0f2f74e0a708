"""The facts the teaching model recites, and the wordings of the questions that ask for them.

Contract:
- `FACTS` lists `Fact`s: an answer ("A block table maps logical blocks to physical blocks.") and
  its questions, the canonical one first ("What is a block table?"). Most facts take their
  questions from a wording list (IS for "what is it", DOES for "what does it do") filled with
  their subject; the few irregular ones list their own.
- `Fact.held_out()`: two of the non-canonical wordings, chosen by rotation over the facts, so
  every wording is trained on for some facts and held out for others. `Fact.trained()`: the rest,
  the canonical question always among them (the notebooks ask it). The training corpus
  (`corpus.py`) asks only trained wordings; the held-out set (`held_out.py`) only held-out ones.
- The answers and canonical questions are the ones the notebooks assert; change them together.
"""

from __future__ import annotations

import dataclasses

IS = (
    "What is {s}?",
    "What's {s}?",
    "Tell me what {s} is.",
    "Explain {s}.",
    "Define {s}.",
    "What does {s} mean?",
    "Describe {s}.",
)
DOES = (
    "What does {s} do?",
    "What is {s} for?",
    "Tell me what {s} does.",
    "Explain what {s} does.",
    "What's the job of {s}?",
    "Describe {s}.",
)
CHAT = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>"
HELD_OUT_PER_FACT = 2


@dataclasses.dataclass(frozen=True)
class Fact:
    answer: str
    questions: tuple[str, ...]  # the canonical question first
    index: int = 0  # its place in FACTS: picks which wordings are held out

    def held_out(self) -> tuple[str, ...]:
        others = len(self.questions) - 1
        picks = {1 + (self.index + k * 3) % others for k in range(HELD_OUT_PER_FACT)}
        return tuple(self.questions[i] for i in sorted(picks))

    def trained(self) -> tuple[str, ...]:
        held = self.held_out()
        return tuple(q for q in self.questions if q not in held)


def _fill(wordings: tuple[str, ...], subject: str) -> tuple[str, ...]:
    return tuple(w.format(s=subject) for w in wordings)


_FACTS = (
    (IS, "a block table", "A block table maps logical blocks to physical blocks."),
    (IS, "the KV cache", "The KV cache stores the keys and values of every token."),
    (IS, "a KV cache", "A KV cache stores the keys and values of every token."),
    (
        (
            "Why page the KV cache?",
            "Why is the KV cache paged?",
            "Tell me why the KV cache is paged.",
            "Explain why the KV cache is paged.",
            "Why does the engine page the KV cache?",
        ),
        None,
        "Paging the KV cache wastes only the tail of the last block.",
    ),
    (
        (
            "When is a sequence preempted?",
            "When is a sequence preempted at a step?",
            "Tell me when a sequence is preempted.",
            "Explain when a sequence is preempted.",
            "When is a sequence preempted in the engine?",
        ),
        None,
        "A sequence is preempted when no free block is left.",
    ),
    (DOES, "the scheduler", "The scheduler decides which sequences run at every step."),
    (IS, "prefix caching", "Prefix caching reuses the blocks of a shared prompt."),
    (IS, "chunked prefill", "Chunked prefill splits a long prompt into pieces."),
    (IS, "a prefill", "A prefill runs the whole prompt through the model at once."),
    (IS, "a decode step", "A decode step computes one new token for each sequence."),
    (DOES, "the sampler", "The sampler turns the logits into the next token."),
    (IS, "greedy decoding", "Greedy decoding always takes the most likely token."),
    (DOES, "temperature", "Temperature divides the logits before the softmax."),
    (IS, "continuous batching", "Continuous batching lets new requests join the batch."),
    (IS, "a CUDA graph", "A CUDA graph replays the decode step in one launch."),
    (IS, "tensor parallelism", "Tensor parallelism splits every weight matrix."),
    (IS, "the slot mapping", "The slot mapping says where each new key is stored."),
    (IS, "the token budget", "The token budget limits the tokens of one step."),
    (IS, "a reference count", "A reference count tells how many sequences share a block."),
    (
        (
            "Which block is evicted first?",
            "What block is evicted first?",
            "Tell me which block is evicted first.",
            "Explain which block is evicted first.",
            "Which block is evicted first from the cache?",
        ),
        None,
        "The least recently used block is evicted first.",
    ),
    (DOES, "the model runner", "The model runner turns a batch into logits."),
    (DOES, "the block manager", "The block manager hands out and frees blocks."),
    (IS, "a hash chain", "A hash chain gives each full block a hash of its prefix."),
    (IS, "an inference engine", "An inference engine turns prompts into text."),
)

FACTS = tuple(
    Fact(answer, wordings if subject is None else _fill(wordings, subject), i)
    for i, (wordings, subject, answer) in enumerate(_FACTS)
)
