"""What-if replay: the same requests, arriving at the same steps, on an engine with other settings.

::

    WorkloadRecorder (an observer)       Workload: (Arrival(step, prompt ids, params), ...)
      record.added_ids --look up--> engine's requests (prompt token ids, SamplingParams)
      step = working steps seen before the request arrived (idle records do not count);
      a replay counts from the first arrival's step

    replay(workload, model, **config)    a fresh LLM, stepped by hand:
      before working step k: add every arrival with step <= k; when the engine has nothing to
      do, the next arrivals at once (steps do not pass while it is idle)
      -> Replay(summary, schedule, outputs); the engine is closed when it returns

``RunSummary.of(records)`` sums what a run did (steps, preemptions, prefill tokens computed,
prefix-cache hits, step time) and keeps a few per-step series; for an engine with a
``speculative_config`` (``speculative=True``) also the tokens drafted and accepted, the acceptance
rate and the mean acceptance length, as the engine's metrics count them (observe/metrics.py, fed
the same records). The recorded run and its replay are summarized the same way, so they compare
side by side. ``schedule(records, ids)`` writes each
step as (arrival index, sample, phase, tokens, start) rows: the same workload on the same settings
(greedy) schedules the same rows, whatever sequence ids either engine gave the requests; with
speculative decoding too (a decode with a draft is one row of 1 + k tokens, and the replay
accepts the same drafts).

Reads only ``StepRecord``s and the engine's public request API; never changes the recorded engine.
It lives above the facade, not in ``engine/observe``: a replay drives an engine of its own, and
observe only reads.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nanovllm.engine.core.events import StepRecord
from nanovllm.engine.observe.metrics import MetricsCollector
from nanovllm.errors import UnknownRequestError
from nanovllm.llm import LLM
from nanovllm.sampling_params import SamplingParams


@dataclass(frozen=True)
class Arrival:
    """One request of a workload: it arrives before working step ``step`` (0 = the first)."""

    step: int
    prompt_token_ids: tuple[int, ...]
    params: SamplingParams


Workload = tuple[Arrival, ...]

# (arrival index, sample index) names a sequence in any run of the same workload
SeqKey = tuple[int, int]


class WorkloadRecorder:
    """Engine observer that writes down every request as it arrives: ``llm.subscribe(rec)``.

    Requests are looked up when their first step is seen (``record.added_ids``), while the engine
    still knows them. A request gone by then (added and dropped between two steps) is counted in
    ``missed``, not recorded. ``first_step`` is the step index of the record the first arrival
    came with: the recorded run of the workload is the records from there on."""

    def __init__(self, llm):
        self.llm = llm
        self.arrivals: list[Arrival] = []
        self.keys: dict[int, SeqKey] = {}  # seq id -> (arrival index, sample) in this run
        self.missed = 0
        self.steps = 0  # working steps seen
        self.first_step: int | None = None  # the step index of the first arrival's record

    def clear(self) -> None:
        self.arrivals.clear()
        self.keys.clear()
        self.missed, self.steps, self.first_step = 0, 0, None

    @property
    def workload(self) -> Workload:
        return tuple(self.arrivals)

    def __call__(self, record: StepRecord) -> None:
        for seq_id in record.added_ids:
            if seq_id not in self.keys:
                self._add(seq_id)
        if self.first_step is None and self.arrivals:
            self.first_step = record.step
        if record.seq_ids:
            self.steps += 1

    def _add(self, seq_id: int) -> None:
        try:
            seqs = self.llm.request_sequences(seq_id)
        except UnknownRequestError:
            self.missed += 1
            return
        leader = seqs[0] if seqs[0].leader is None else seqs[0].leader
        siblings = seqs if seqs[0].leader is None else self.llm.request_sequences(leader.seq_id)
        params = leader.params
        if len(siblings) > 1:  # the samples' params are the request's with n=1 and seed + i
            params = dataclasses.replace(params, n=len(siblings))
        index = len(self.arrivals)
        prompt = tuple(leader.token_ids[: leader.num_prompt_tokens])
        self.arrivals.append(Arrival(self.steps, prompt, params))
        for s in siblings:
            self.keys[s.seq_id] = (index, s.index)


@dataclass(frozen=True)
class RunSummary:
    """What a run did, summed over its working steps (``series``: one value per working step).
    The speculation figures are None for an engine that does not draft (not 0: nothing to say)."""

    steps: int
    preemptions: int
    prefill_tokens: int  # computed, recomputes after a preemption included
    decode_tokens: int
    prefix_hit_tokens: int
    finished: int
    step_time: float  # seconds, the steps' own time (not the pauses between them)
    draft_tokens: int | None = None  # draft tokens the target verified
    accepted_tokens: int | None = None  # of them, the ones it accepted
    acceptance_rate: float | None = None  # accepted / draft tokens
    mean_acceptance_length: float | None = None  # tokens a drafting decode appends, its own too
    series: dict[str, list] = field(default_factory=dict, repr=False, compare=False)

    SERIES = ("kv_blocks_used", "num_running", "num_waiting")

    @property
    def speculative(self) -> bool:
        """The run's engine drafted tokens (a speculative_config)."""
        return self.draft_tokens is not None

    @classmethod
    def of(cls, records: Iterable[StepRecord], speculative: bool = False) -> RunSummary:
        """``records``' summary; ``speculative``: the engine had a ``speculative_config``."""
        records = list(records)
        work = [r for r in records if r.seq_ids]
        series: dict[str, list] = {name: [getattr(r, name) for r in work] for name in cls.SERIES}
        preempted, total = [], 0
        for r in work:
            total += len(r.preempted_ids)
            preempted.append(total)
        series["preemptions"] = preempted
        return cls(
            steps=len(work),
            preemptions=total,
            prefill_tokens=sum(r.num_prefill_tokens for r in work),
            decode_tokens=sum(r.num_decode_tokens for r in work),
            prefix_hit_tokens=sum(r.prefix_hit_tokens for r in work),
            finished=sum(len(r.finished_ids) for r in records),
            step_time=sum(r.timing.total for r in work),
            series=series,
            **(_speculation(work) if speculative else {}),
        )

    def row(self) -> dict[str, Any]:
        """The totals as a plain dict (a table row)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "series"}


def _speculation(records: list[StepRecord]) -> dict[str, Any]:
    """The speculation figures the engine's metrics read from these records."""
    metrics = MetricsCollector()
    for r in records:
        metrics.on_step(r)
    m = metrics.summary()
    return dict(
        draft_tokens=m["spec_decode_num_draft_tokens"],
        accepted_tokens=m["spec_decode_num_accepted_tokens"],
        acceptance_rate=m["spec_decode_acceptance_rate"],
        mean_acceptance_length=m["spec_decode_mean_acceptance_length"],
    )


def schedule(records: Iterable[StepRecord], keys: dict[int, SeqKey]) -> list[tuple]:
    """Each working step as a tuple of (arrival, sample, is_decode, num_tokens, start) rows, in
    batch order; sequences not in ``keys`` (not part of the workload) are left out."""
    out = []
    for r in records:
        if not r.seq_ids:
            continue
        rows = tuple(
            (*keys[i], d, n, s)
            for i, d, n, s in zip(r.seq_ids, r.is_decode, r.num_new_tokens, r.starts, strict=True)
            if i in keys
        )
        out.append(rows)
    return out


@dataclass(frozen=True)
class Replay:
    config: dict[str, Any]
    summary: RunSummary
    records: tuple[StepRecord, ...] = field(repr=False)
    keys: dict[int, SeqKey] = field(repr=False)  # the replay's seq ids -> (arrival, sample)
    outputs: dict[SeqKey, list[int]] = field(repr=False)  # completion token ids
    wall_time: float = 0.0  # seconds, the whole replay (engine start not included)

    @property
    def schedule(self) -> list[tuple]:
        return schedule(self.records, self.keys)


def replay(workload: Workload, model: str, max_steps: int = 1_000_000, **config: Any) -> Replay:
    """Run ``workload`` on a fresh ``LLM(model, **config)`` and close it. Raises ``RuntimeError``
    when the run has not finished after ``max_steps`` steps (a cache too small for a request
    never finishes it)."""
    with LLM(model, **config) as llm:
        records: list[StepRecord] = []
        keys: dict[int, SeqKey] = {}
        base = min((a.step for a in workload), default=0)
        pending = sorted(range(len(workload)), key=lambda k: workload[k].step)[::-1]
        started, steps, skipped = time.perf_counter(), 0, 0
        while pending or llm.has_unfinished():
            if steps >= max_steps:
                raise RuntimeError(
                    f"the replay ran {max_steps} steps and has not finished; the settings "
                    f"{config} may be too small for the workload (raise max_steps to wait longer)"
                )
            if pending and not llm.has_unfinished():  # idle: the clock jumps to the next arrival
                skipped = max(skipped, workload[pending[-1]].step - base - len(records))
            while pending and workload[pending[-1]].step - base <= len(records) + skipped:
                k = pending.pop()
                request_id = llm.add_request(list(workload[k].prompt_token_ids), workload[k].params)
                for s in llm.request_sequences(request_id):
                    keys[s.seq_id] = (k, s.index)
            record, steps = llm.step(), steps + 1
            if record.seq_ids:
                records.append(record)
        wall = time.perf_counter() - started
        outputs = {keys[s.seq_id]: list(s.completion_token_ids) for s in _sequences(llm, keys)}
        summary = RunSummary.of(records, llm.config.speculative_config is not None)
    return Replay(dict(config), summary, tuple(records), keys, outputs, wall)


def _sequences(llm, keys: dict[int, SeqKey]):
    for seq_id in keys:
        yield from (s for s in llm.request_sequences(seq_id) if s.seq_id == seq_id)
