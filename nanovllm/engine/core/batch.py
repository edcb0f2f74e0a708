"""What one step computes, what it sampled, and what it changed: plain data passed between the
scheduler, the runner and the engine. No torch, no numpy.

::

    Scheduler.schedule() -> ScheduledBatch        row i: seqs[i] computes num_new_tokens[i] tokens
                                                  from position starts[i]; reaches_end[i] when
                                                  that chunk ends at the sequence's last token
    Scheduler.advance(batch)                      the batch is launched: tokens count as computed
    executor.collect(...) -> SamplerOutput        one row per sample row: row k belongs to batch
                                                  row sample_rows[k]
    Scheduler.postprocess(batch, sampler_output)  -> StepOutcome: the tokens written, the
                                                  finishes, the events (core/events.py turns
                                                  batch + outcome into the StepRecord)

``Phase`` names a step by what it computed, with one rule for every reader (metrics, the timing
view, ``LLM``'s progress bar): a step with prefill tokens and decode tokens is MIXED; a step that
computed nothing is IDLE. Wherever steps are split in two (prefill vs decode time), MIXED counts as
prefill: its prompt tokens dominate its cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property

from nanovllm.engine.core.sequence import Sequence, SequenceEvent


class Phase(str, Enum):
    PREFILL = "prefill"  # only prompt chunks (or recomputes after preemption)
    DECODE = "decode"  # only decodes, one token each
    MIXED = "mixed"  # both
    IDLE = "idle"  # nothing scheduled

    @classmethod
    def of(cls, num_prefill_tokens: int, num_decode_tokens: int) -> Phase:
        if num_prefill_tokens and num_decode_tokens:
            return cls.MIXED
        if num_prefill_tokens:
            return cls.PREFILL
        return cls.DECODE if num_decode_tokens else cls.IDLE

    @property
    def has_prefill(self) -> bool:
        """Counts as a prefill step where steps are split in two (see the module docstring)."""
        return self in (Phase.PREFILL, Phase.MIXED)


@dataclass
class ScheduledBatch:
    """What one step computes. Fixed at scheduling time: the sequences move on in
    ``Scheduler.postprocess``."""

    step: int
    seqs: list[Sequence] = field(default_factory=list)
    num_new_tokens: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    is_decode: list[bool] = field(default_factory=list)
    reaches_end: list[bool] = field(default_factory=list)  # so this row samples a token
    preempted_ids: list[int] = field(default_factory=list)
    admitted_ids: list[int] = field(default_factory=list)
    prefix_hit_tokens: int = 0
    # the state changes since the step before was scheduled, up to this one's admissions and
    # preemptions (requests added or aborted in between too); the StepRecord carries them
    events: tuple[SequenceEvent, ...] = ()

    def add(self, seq: Sequence, n: int, decode: bool) -> None:
        self.seqs.append(seq)
        self.num_new_tokens.append(n)
        self.starts.append(seq.num_computed_tokens)
        self.is_decode.append(decode)
        self.reaches_end.append(seq.num_computed_tokens + n == seq.num_tokens)

    def __len__(self) -> int:
        return len(self.seqs)

    @cached_property
    def sample_rows(self) -> list[int]:
        """The batch rows that sample, in order (read once ``schedule()`` has returned)."""
        return [i for i, end in enumerate(self.reaches_end) if end]

    @property
    def num_tokens(self) -> int:
        return sum(self.num_new_tokens)

    @property
    def num_decode_tokens(self) -> int:
        return sum(self.is_decode)  # a decode computes exactly one token

    @property
    def phase(self) -> Phase:
        decode = self.num_decode_tokens
        return Phase.of(self.num_tokens - decode, decode)


@dataclass
class SamplerOutput:
    """What the sampler drew, one entry per sample row (``ScheduledBatch.sample_rows``)."""

    token_ids: list[int]
    logprobs: list[float | None]
    top_logprobs: list[dict[int, float] | None]
    finite: list[bool]  # False: the row's logits held NaN/inf, so its request fails
    ranks: list[int | None] = field(default_factory=list)  # sampled token's vocab rank (1 = top)

    @classmethod
    def of_tokens(cls, token_ids: list[int]) -> SamplerOutput:
        """Tokens alone (all finite, no logprobs): to drive the scheduler by hand, in tests."""
        n = len(token_ids)
        return cls(list(token_ids), [None] * n, [None] * n, [True] * n)


@dataclass(frozen=True)
class StepOutcome:
    """What a step changed, decided once, by ``Scheduler.postprocess`` (vLLM's
    ``update_from_output``): the engine and the StepRecord read it, nobody re-derives it.

    ``new_token_ids[i]`` are the tokens batch row i added to its sequence, in order: none for a
    prompt chunk that stops short of the end, for a row whose sequence finished before (a wasted
    row) or failed in this step; one for a sample row. A decode that verifies drafted tokens
    (speculative decoding) adds every token it accepts to its row's tuple.
    """

    new_token_ids: tuple[tuple[int, ...], ...]  # one tuple per batch row
    finished_ids: tuple[int, ...]
    # (seq id, completion token ids) of each finished sequence: nano-vllm's step() output
    finished_outputs: tuple[tuple[int, list[int]], ...]
    # the state changes since the step was scheduled: its finishes (and aborts in between)
    events: tuple[SequenceEvent, ...]
    num_running: int  # the scheduler's queues once the step is done
    num_waiting: int
    time: float  # time.perf_counter() when postprocess began: first-token times are stamped with it
