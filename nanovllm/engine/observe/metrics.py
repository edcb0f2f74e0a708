"""MetricsCollector: running totals behind ``LLM.get_metrics()``. A pure observer: it reads the
StepRecords it is handed (requests added / finished / failed / aborted from their
``SequenceEvent``s) and nothing else, so no engine code calls it.

O(1) work per step and per event; no history is kept here (that is the Recorder's job). Counts
cover the steps seen so far: a request added or aborted since the last step is counted once the
next record (a step, or ``LLMEngine.flush_events()``) carries its event.

Speculative decoding uses vLLM's counter names (``vllm:spec_decode_num_drafts`` and so on, without
the prefix): drafts verified, draft tokens, accepted tokens, accepted tokens per draft position;
and the two figures read from them, ``spec_decode_acceptance_rate`` (accepted / draft tokens) and
``spec_decode_mean_acceptance_length`` (1 + accepted / drafts: tokens a drafting decode appends
per step, its own included). With no draft verified (speculation off, or nothing drafted yet) they
read 0.0 and 1.0, as vLLM 0.32's per-request ``SpeculativeDecodingMetrics`` does (a decode appends
its own token, so a length below 1 cannot happen); vLLM's periodic log prints no spec-decode line
then, and its Prometheus counters stay at 0 (the ratios are left to PromQL).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from nanovllm.engine.core.events import StepRecord
from nanovllm.engine.core.sequence import SequenceStatus


@dataclass
class _Totals:
    requests_added: int = 0
    requests_finished: int = 0
    requests_failed: int = 0
    requests_aborted: int = 0
    prompt_tokens: int = 0
    prefill_tokens: int = 0  # tokens actually computed in prefill (cache hits excluded)
    decode_tokens: int = 0
    decode_step_tokens: int = 0  # decode tokens of decode-only steps (a mixed step is a prefill)
    generated_tokens: int = 0
    prefix_hit_tokens: int = 0
    admitted_tokens: int = 0  # tokens of admitted sequences (a resumed one: prompt + generated)
    preemptions: int = 0
    steps: int = 0
    failed_steps: int = 0
    prefill_steps: int = 0
    decode_steps: int = 0
    prefill_time: float = 0.0  # step time of steps that computed any prefill token
    decode_time: float = 0.0  # step time of decode-only steps
    busy_time: float = 0.0  # sum of step times
    first_step_time: float | None = None
    last_step_time: float | None = None
    spec_decode_num_drafts: int = 0
    spec_decode_num_draft_tokens: int = 0
    spec_decode_num_accepted_tokens: int = 0
    # [i]: drafts whose token at position i was accepted
    spec_decode_num_accepted_tokens_per_pos: list[int] = field(default_factory=list)


class MetricsCollector:
    def __init__(self) -> None:
        self._t = _Totals()

    def reset(self) -> None:
        self._t = _Totals()

    def on_step(self, r: StepRecord) -> None:
        t = self._t
        self._count_events(r)
        t.steps += 1
        if r.error is not None:
            t.failed_steps += 1
            return
        if not r.seq_ids:
            return  # idle
        if t.first_step_time is None:
            t.first_step_time = r.time - r.timing.total
        t.last_step_time = r.time
        prefill, decode = r.num_prefill_tokens, r.num_decode_tokens
        t.prefill_tokens += prefill
        t.decode_tokens += decode
        t.generated_tokens += r.num_generated
        t.prefix_hit_tokens += r.prefix_hit_tokens
        t.preemptions += len(r.preempted_ids)
        if r.drafts:
            self._count_drafts(r)
        t.busy_time += r.timing.total
        if r.phase.has_prefill:
            t.prefill_steps += 1
            t.prefill_time += r.timing.total
        else:
            t.decode_steps += 1
            t.decode_time += r.timing.total
            t.decode_step_tokens += decode

    def _count_drafts(self, r: StepRecord) -> None:
        t = self._t
        t.spec_decode_num_drafts += r.num_drafts
        t.spec_decode_num_draft_tokens += r.num_draft_tokens
        t.spec_decode_num_accepted_tokens += r.num_accepted_tokens
        per_pos = t.spec_decode_num_accepted_tokens_per_pos
        for draft, accepted in zip(r.drafts, r.num_accepted):
            if len(per_pos) < len(draft):
                per_pos.extend([0] * (len(draft) - len(per_pos)))
            for i in range(accepted):
                per_pos[i] += 1

    def _count_events(self, r: StepRecord) -> None:
        t = self._t
        for e in r.events:
            if e.before is None:  # added
                t.requests_added += 1
                t.prompt_tokens += e.num_tokens
            elif e.after is SequenceStatus.RUNNING:  # admitted: scheduled, or resumed
                t.admitted_tokens += e.num_tokens
            elif e.after is SequenceStatus.FINISHED:
                if e.reason == "error":
                    t.requests_failed += 1
                elif e.reason == "abort":
                    t.requests_aborted += 1
                else:
                    t.requests_finished += 1

    def summary(self) -> dict[str, Any]:
        t = self._t
        wall = (t.last_step_time - t.first_step_time) if t.first_step_time is not None else 0.0
        out = {f.name: getattr(t, f.name) for f in fields(t) if not f.name.endswith("step_time")}
        out.update(
            total_requests=t.requests_added,
            successful_requests=t.requests_finished,
            failed_requests=t.requests_failed,
            avg_prefill_step_time=t.prefill_time / t.prefill_steps if t.prefill_steps else 0.0,
            avg_decode_step_time=t.decode_time / t.decode_steps if t.decode_steps else 0.0,
            prefill_tokens_per_s=t.prefill_tokens / t.prefill_time if t.prefill_time else 0.0,
            decode_tokens_per_s=t.decode_step_tokens / t.decode_time if t.decode_time else 0.0,
            # per second of step time: idle time between steps (stepping by hand) does not count
            generated_tokens_per_s=t.generated_tokens / t.busy_time if t.busy_time else 0.0,
            # of the tokens admitted sequences had, the share found in the prefix cache
            prefix_cache_hit_rate=(
                t.prefix_hit_tokens / t.admitted_tokens if t.admitted_tokens else 0.0
            ),
            wall_time=wall,
            spec_decode_acceptance_rate=(
                t.spec_decode_num_accepted_tokens / t.spec_decode_num_draft_tokens
                if t.spec_decode_num_draft_tokens
                else 0.0
            ),
            spec_decode_mean_acceptance_length=(
                1 + t.spec_decode_num_accepted_tokens / t.spec_decode_num_drafts
                if t.spec_decode_num_drafts
                else 1.0  # no draft: each decode appends its own token only
            ),
        )
        out["spec_decode_num_accepted_tokens_per_pos"] = list(
            t.spec_decode_num_accepted_tokens_per_pos
        )
        # The names the design this project comes from documents (same values as above):
        # mean seconds of a step with prefill tokens / of a decode-only step, and generated
        # tokens per second of step time.
        out.update(
            avg_prefill_time=out["avg_prefill_step_time"],
            avg_decode_time=out["avg_decode_step_time"],
            avg_tokens_per_second=out["generated_tokens_per_s"],
        )
        return out
