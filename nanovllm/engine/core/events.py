"""What the engine tells its observers: one ``StepRecord`` per step, one ``SequenceEvent`` per state
transition (defined in sequence.py, next to the states). Plain frozen data, cheap to build and to
keep; the workbench and the metrics read only these (and ``EngineSnapshot``), never engine
internals.

``step_record`` is the one place a StepRecord is filled, from what the step scheduled (the
``ScheduledBatch``), what it changed (the scheduler's ``StepOutcome``), the cache's occupancy
after it and its timing::

    ScheduledBatch (+ its events)  --+
    StepOutcome (+ its events)     --+--> step_record(...) -> StepRecord -> observers
    CacheUsage, StepTiming         --+

Events between steps (``add_request``, ``abort``) are carried by the next StepRecord, or by the
idle record ``LLMEngine.flush_events()`` makes; so an observer sees every event exactly once."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, NamedTuple

from nanovllm.engine.core.batch import Phase, ScheduledBatch, StepOutcome
from nanovllm.engine.core.sequence import SequenceEvent

if TYPE_CHECKING:
    from nanovllm.engine.core.block_manager import CacheUsage

__all__ = ["ScheduledEntry", "SequenceEvent", "StepRecord", "StepTiming", "step_record"]


class ScheduledEntry(NamedTuple):  # a NamedTuple: hundreds are built per step, cheaply
    """One sequence's share of a step: ``num_tokens`` tokens from position ``start``."""

    seq_id: int
    phase: Phase  # PREFILL (a prompt chunk or a recompute) or DECODE
    num_tokens: int
    start: int
    reaches_end: bool  # the chunk reached the sequence's end, so a token was sampled


@dataclass(frozen=True)
class StepTiming:
    """Seconds spent in each part of a step. On GPU ``forward`` is device time from CUDA events.

    One step at a time the parts add up to at most ``total``. With overlap scheduling a step's
    schedule and prepare (and its forward, on the device) begin while the step before is still
    running, and ``total`` is the time since that step finished: the parts may add up to more."""

    schedule: float = 0.0
    prepare: float = 0.0
    forward: float = 0.0
    sample: float = 0.0
    postprocess: float = 0.0
    total: float = 0.0


@dataclass(frozen=True)
class StepRecord:
    """One step, as data. The scheduled sequences are kept as columns (cheap to build at batch
    256 every few milliseconds); ``scheduled`` gives them as ``ScheduledEntry`` rows."""

    step: int
    seq_ids: tuple[int, ...]  # the scheduled sequences, in batch order
    is_decode: tuple[bool, ...]
    num_new_tokens: tuple[int, ...]
    starts: tuple[int, ...]
    reaches_end: tuple[bool, ...]  # per scheduled sequence: it sampled a token
    num_prefill_tokens: int
    num_decode_tokens: int
    admitted_ids: tuple[int, ...]
    preempted_ids: tuple[int, ...]
    finished_ids: tuple[int, ...]
    added_ids: tuple[int, ...]  # requests that arrived since the previous step
    tokens: tuple[int | None, ...]  # per scheduled sequence, the token it sampled (None: a chunk)
    kv_blocks_used: int
    kv_blocks_free: int
    kv_blocks_cached: int  # free but still holding a cached prefix block
    kv_blocks_total: int
    prefix_hit_tokens: int
    num_running: int
    num_waiting: int
    timing: StepTiming
    events: tuple[SequenceEvent, ...] = ()
    error: str | None = None  # set when the step raised and was abandoned (see LLMEngine.step)
    # MoE models: tokens routed to each expert, [sparse layers, experts] (an int64 numpy array,
    # built by the runner; core itself never imports numpy); None for dense models
    expert_tokens: object | None = None
    time: float = 0.0  # time.perf_counter() at the end of the step
    # (seq_id, completion token ids) of the sequences that finished: nano-vllm's step() output
    finished_outputs: tuple[tuple[int, list[int]], ...] = ()

    @cached_property
    def scheduled(self) -> tuple[ScheduledEntry, ...]:
        return tuple(
            ScheduledEntry(i, Phase.DECODE if d else Phase.PREFILL, n, st, end)
            for i, d, n, st, end in zip(
                self.seq_ids, self.is_decode, self.num_new_tokens, self.starts, self.reaches_end
            )
        )

    @cached_property
    def new_tokens(self) -> tuple[tuple[int, int], ...]:
        """(seq_id, token) for each token sampled this step."""
        return tuple((i, t) for i, t in zip(self.seq_ids, self.tokens) if t is not None)

    @property
    def num_generated(self) -> int:
        return len(self.tokens) - self.tokens.count(None)

    @property
    def num_tokens(self) -> int:
        return self.num_prefill_tokens + self.num_decode_tokens

    @property
    def phase(self) -> Phase:
        return Phase.of(self.num_prefill_tokens, self.num_decode_tokens)

    def __iter__(self):
        """nano-vllm compatibility: ``outputs, num_tokens = llm.step()`` unpacks a record into
        nano-vllm's pair: ``[(seq_id, completion token ids)]`` of the sequences that finished,
        and the tokens computed, negative for a decode-only step (nano-vllm's convention)."""
        num_tokens = self.num_prefill_tokens or -self.num_decode_tokens
        return iter((list(self.finished_outputs), num_tokens))


def step_record(
    batch: ScheduledBatch,
    outcome: StepOutcome,
    cache: CacheUsage,
    timing: StepTiming,
    *,
    error: str | None = None,
    expert_tokens: object | None = None,
) -> StepRecord:
    """The record of one step: ``batch`` as scheduled, ``outcome`` as postprocessed (or the empty
    outcome of a step that sampled nothing), ``cache`` once it is done. A row's token is the last
    one it added (the only one, until a decode can accept several)."""
    events = batch.events + outcome.events
    decode_tokens = batch.num_decode_tokens
    return StepRecord(
        step=batch.step,
        seq_ids=tuple([s.seq_id for s in batch.seqs]),
        is_decode=tuple(batch.is_decode),
        num_new_tokens=tuple(batch.num_new_tokens),
        starts=tuple(batch.starts),
        reaches_end=tuple(batch.reaches_end),
        num_prefill_tokens=batch.num_tokens - decode_tokens,
        num_decode_tokens=decode_tokens,
        admitted_ids=tuple(batch.admitted_ids),
        preempted_ids=tuple(batch.preempted_ids),
        finished_ids=outcome.finished_ids,
        added_ids=tuple([e.seq_id for e in events if e.before is None]),
        tokens=tuple([t[-1] if t else None for t in outcome.new_token_ids]),
        kv_blocks_used=cache.used,
        kv_blocks_free=cache.free,
        kv_blocks_cached=cache.cached,
        kv_blocks_total=cache.total,
        prefix_hit_tokens=batch.prefix_hit_tokens,
        num_running=outcome.num_running,
        num_waiting=outcome.num_waiting,
        timing=timing,
        events=events,
        error=error,
        expert_tokens=expert_tokens,
        time=time.perf_counter(),
        finished_outputs=outcome.finished_outputs,
    )
