"""What the engine tells its observers: one ``StepRecord`` per step, one ``SequenceEvent`` per state
transition. Plain frozen data, cheap to build and to keep; the workbench and the metrics read only
these (and ``EngineSnapshot``), never engine internals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from nanovllm.engine.sequence import SequenceStatus


@dataclass(frozen=True)
class SequenceEvent:
    """``seq_id`` went from ``before`` (None when just added) to ``after`` during ``step``."""

    step: int
    seq_id: int
    before: SequenceStatus | None
    after: SequenceStatus
    reason: str
    time: float = 0.0  # time.perf_counter() when it happened


class ScheduledEntry(NamedTuple):  # a NamedTuple: hundreds are built per step, cheaply
    """One sequence's share of a step: ``num_tokens`` tokens from position ``start``."""

    seq_id: int
    phase: str  # "prefill" (a prompt chunk or a recompute) or "decode"
    num_tokens: int
    start: int
    sampled: bool  # the chunk reached the sequence's end, so a token was sampled


@dataclass(frozen=True)
class StepTiming:
    """Seconds spent in each part of a step. On GPU ``forward`` is device time from CUDA events."""

    schedule: float = 0.0
    prepare: float = 0.0
    forward: float = 0.0
    sample: float = 0.0
    postprocess: float = 0.0
    total: float = 0.0


@dataclass(frozen=True)
class StepRecord:
    step: int
    scheduled: tuple[ScheduledEntry, ...]
    admitted_ids: tuple[int, ...]
    preempted_ids: tuple[int, ...]
    finished_ids: tuple[int, ...]
    added_ids: tuple[int, ...]  # requests that arrived since the previous step
    new_tokens: tuple[tuple[int, int], ...]  # (seq_id, token) sampled this step
    kv_blocks_used: int
    kv_blocks_free: int
    kv_blocks_cached: int  # free but still holding a cached prefix block
    kv_blocks_total: int
    prefix_hit_tokens: int
    num_running: int
    num_waiting: int
    timing: StepTiming
    events: tuple[SequenceEvent, ...] = ()
    error: str | None = None  # set when the step raised and was rolled back
    time: float = 0.0  # time.perf_counter() at the end of the step

    @property
    def num_tokens(self) -> int:
        return sum(e.num_tokens for e in self.scheduled)

    @property
    def num_prefill_tokens(self) -> int:
        return sum(e.num_tokens for e in self.scheduled if e.phase == "prefill")

    @property
    def num_decode_tokens(self) -> int:
        return sum(e.num_tokens for e in self.scheduled if e.phase == "decode")

    @property
    def phase(self) -> str:
        phases = {e.phase for e in self.scheduled}
        return "idle" if not phases else "mixed" if len(phases) == 2 else phases.pop()

    def _repr_html_(self) -> str:
        from nanovllm.engine.html import step_record_html

        return step_record_html(self)

