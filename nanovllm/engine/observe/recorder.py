"""Recorder: keeps the engine's history and serves it as pandas DataFrames.

    rec = Recorder(max_steps=10_000)
    rec.attach(engine)          # engine.subscribe(rec.on_step)
    ...
    rec.steps, rec.events, rec.sequences      # DataFrames

The history is bounded (oldest steps dropped first). pandas is imported only when a DataFrame is
asked for, so recording costs one append per step.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from nanovllm.engine.core.events import SequenceEvent, StepRecord


class Recorder:
    def __init__(self, max_steps: int | None = 100_000):
        self.max_steps = max_steps
        self.records: deque[StepRecord] = deque(maxlen=max_steps)
        self.event_log: deque[SequenceEvent] = deque(
            maxlen=None if max_steps is None else 20 * max_steps
        )
        # seq id -> [time of first token, time of latest token, tokens so far]: O(1) per token
        self._token_times: dict[int, list] = {}
        self._added: dict[int, float] = {}  # seq id -> time it was added
        self._unsubscribe = None

    def attach(self, engine) -> Recorder:
        self.detach()
        self._unsubscribe = engine.subscribe(self.on_step)
        return self

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def clear(self) -> None:
        self.records.clear()
        self.event_log.clear()
        self._token_times.clear()
        self._added.clear()

    def on_step(self, record: StepRecord) -> None:
        self.records.append(record)
        self.event_log.extend(record.events)
        for e in record.events:
            if e.before is None:
                self._added[e.seq_id] = e.time
        now, times = record.time, self._token_times
        counts = map(len, record.new_token_ids) if record.drafts else None  # several a row
        for seq_id, token in zip(record.seq_ids, record.tokens):
            n = 1 if counts is None else next(counts)
            if token is not None:
                t = times.get(seq_id)
                if t is None:
                    times[seq_id] = [now, now, n]
                else:
                    t[1] = now
                    t[2] += n

    # ---- DataFrames ------------------------------------------------------------------------------
    @property
    def steps(self):
        """One row per step: token counts by phase, cache occupancy, timings."""
        import pandas as pd

        rows = [_step_row(r) for r in self.records]
        return pd.DataFrame(rows, columns=list(_step_row(None).keys()) if not rows else None)

    @property
    def scheduled(self):
        """One row per (step, scheduled sequence)."""
        import pandas as pd

        rows = [
            dict(
                step=r.step,
                seq_id=e.seq_id,
                phase=e.phase,
                num_tokens=e.num_tokens,
                start=e.start,
                reaches_end=e.reaches_end,
            )
            for r in self.records
            for e in r.scheduled
        ]
        return pd.DataFrame(
            rows, columns=["step", "seq_id", "phase", "num_tokens", "start", "reaches_end"]
        )

    @property
    def events(self):
        """One row per state transition."""
        import pandas as pd

        rows = [
            dict(
                step=e.step,
                seq_id=e.seq_id,
                before=e.before.value if e.before else None,
                after=e.after.value,
                reason=e.reason,
                time=e.time,
            )
            for e in self.event_log
        ]
        return pd.DataFrame(rows, columns=["step", "seq_id", "before", "after", "reason", "time"])

    @property
    def sequences(self):
        """One row per request seen: token counts, preemptions, time to first token and mean
        inter-token latency (seconds; NaN until known)."""
        import pandas as pd

        return pd.DataFrame(
            self._sequence_rows(),
            columns=[
                "seq_id",
                "added_step",
                "finished_step",
                "finish_reason",
                "num_generated",
                "num_preemptions",
                "ttft",
                "itl_mean",
            ],
        )

    def _sequence_rows(self) -> list[dict[str, Any]]:
        info: dict[int, dict[str, Any]] = {}
        for e in self.event_log:
            row = info.setdefault(
                e.seq_id,
                dict(
                    seq_id=e.seq_id,
                    added_step=None,
                    finished_step=None,
                    finish_reason=None,
                    num_preemptions=0,
                ),
            )
            if e.before is None:
                row["added_step"] = e.step
            if e.after.value == "PREEMPTED":
                row["num_preemptions"] += 1
            if e.after.value == "FINISHED":
                row["finished_step"], row["finish_reason"] = e.step, e.reason
        nan = float("nan")
        for seq_id, row in info.items():
            first, last, n = self._token_times.get(seq_id, (None, None, 0))
            added = self._added.get(seq_id)
            row["num_generated"] = n
            row["ttft"] = first - added if n and added is not None else nan
            row["itl_mean"] = (last - first) / (n - 1) if n > 1 else nan
        return list(info.values())


def _step_row(r: StepRecord | None) -> dict[str, Any]:
    if r is None:
        r_fields = [
            "step",
            "phase",
            "num_seqs",
            "prefill_tokens",
            "decode_tokens",
            "num_tokens",
            "admitted",
            "preempted",
            "finished",
            "kv_used",
            "kv_free",
            "kv_cached",
            "kv_total",
            "prefix_hit_tokens",
            "num_running",
            "num_waiting",
            "t_schedule",
            "t_prepare",
            "t_forward",
            "t_sample",
            "t_postprocess",
            "t_total",
            "error",
        ]
        return dict.fromkeys(r_fields)
    t = r.timing
    return dict(
        step=r.step,
        phase=r.phase,
        num_seqs=len(r.seq_ids),
        prefill_tokens=r.num_prefill_tokens,
        decode_tokens=r.num_decode_tokens,
        num_tokens=r.num_tokens,
        admitted=len(r.admitted_ids),
        preempted=len(r.preempted_ids),
        finished=len(r.finished_ids),
        kv_used=r.kv_blocks_used,
        kv_free=r.kv_blocks_free,
        kv_cached=r.kv_blocks_cached,
        kv_total=r.kv_blocks_total,
        prefix_hit_tokens=r.prefix_hit_tokens,
        num_running=r.num_running,
        num_waiting=r.num_waiting,
        t_schedule=t.schedule,
        t_prepare=t.prepare,
        t_forward=t.forward,
        t_sample=t.sample,
        t_postprocess=t.postprocess,
        t_total=t.total,
        error=r.error,
    )
