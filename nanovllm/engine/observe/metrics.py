"""MetricsCollector: running totals behind ``LLM.get_metrics()``, fed by StepRecords.

O(1) work per step and per request; no history is kept here (that is the Recorder's job).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from nanovllm.engine.core.events import StepRecord


@dataclass
class _Totals:
    requests_added: int = 0
    requests_finished: int = 0
    requests_failed: int = 0
    requests_aborted: int = 0
    prompt_tokens: int = 0
    prefill_tokens: int = 0  # tokens actually computed in prefill (cache hits excluded)
    decode_tokens: int = 0
    generated_tokens: int = 0
    prefix_hit_tokens: int = 0
    admitted_prompt_tokens: int = 0
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


class MetricsCollector:
    def __init__(self) -> None:
        self._t = _Totals()
        self._prompt_len: dict[int, int] = {}

    def reset(self) -> None:
        self._t = _Totals()

    def on_request_added(self, seq_id: int, num_prompt_tokens: int) -> None:
        self._t.requests_added += 1
        self._t.prompt_tokens += num_prompt_tokens
        self._prompt_len[seq_id] = num_prompt_tokens

    def on_request_finished(self, seq, now: float) -> None:
        reason = seq.finish_reason.value if seq.finish_reason else None
        if reason == "error":
            self._t.requests_failed += 1
        elif reason == "abort":
            self._t.requests_aborted += 1
        else:
            self._t.requests_finished += 1
        self._prompt_len.pop(seq.seq_id, None)

    def on_step(self, r: StepRecord) -> None:
        t = self._t
        t.steps += 1
        if r.error is not None:
            t.failed_steps += 1
            return
        if not r.seq_ids:
            return
        t.first_step_time = (
            t.first_step_time if t.first_step_time is not None else r.time - r.timing.total
        )
        t.last_step_time = r.time
        prefill, decode = r.num_prefill_tokens, r.num_decode_tokens
        t.prefill_tokens += prefill
        t.decode_tokens += decode
        t.generated_tokens += r.num_sampled
        t.prefix_hit_tokens += r.prefix_hit_tokens
        t.admitted_prompt_tokens += sum(self._prompt_len.get(i, 0) for i in r.admitted_ids)
        t.preemptions += len(r.preempted_ids)
        t.busy_time += r.timing.total
        if prefill:
            t.prefill_steps += 1
            t.prefill_time += r.timing.total
        else:
            t.decode_steps += 1
            t.decode_time += r.timing.total

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
            decode_tokens_per_s=t.decode_tokens / t.decode_time if t.decode_time else 0.0,
            # per second of step time: idle time between steps (stepping by hand) does not count
            generated_tokens_per_s=t.generated_tokens / t.busy_time if t.busy_time else 0.0,
            prefix_cache_hit_rate=(
                t.prefix_hit_tokens / t.admitted_prompt_tokens if t.admitted_prompt_tokens else 0.0
            ),
            wall_time=wall,
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
