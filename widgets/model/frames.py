"""FrameTaker: the workbench's step observer. Each ``StepRecord`` becomes a ``Frame`` of the
``History``, with a snapshot of the cache and the metrics when they are cheap enough to take.

::

    engine.step() --StepRecord--> take(record) --Frame(record, snapshot?, metrics?)--> History
                                        |
    a redraw of the live step ----> complete(): the latest frame gets the snapshot and metrics
                                    it was not given (taken now, when the views need them)

Snapshots cost O(blocks + sequences). By default one (with the metrics) is kept for every step
while it costs at most ``SNAPSHOT_SHARE`` of the engine's step time (the teaching case: a few
requests, a small cache); beyond it (a 64-request batch on a fast step, or 100k blocks) only at
redraws, and time travel shows the nearest earlier ones. ``every_step`` True / False overrides
the rule; the integrity overlay (``check``) takes a checked snapshot every step. StepRecords, and
so the timeline and timing, are always kept. The engine is read through its public API only
(``snapshot()``, ``get_metrics()``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from nanovllm.engine.observe.snapshot import EngineSnapshot

from .history import Frame, History

if TYPE_CHECKING:
    from nanovllm.engine.observe.recorder import StepRecord

SNAPSHOT_SHARE = 0.01


class FrameTaker:
    def __init__(self, history: History, every_step: bool | None = None):
        self.history = history
        self.llm = None  # the engine (set by the workbench; replaced when it rebuilds)
        self.every_step = every_step  # True / False, or None: while cheap
        self.check = False  # run the engine's integrity check with every snapshot
        self.snap_cost = self.step_cost = 0.0  # moving averages, seconds

    def take(self, record: StepRecord) -> Frame:
        """Keep ``record`` as the History's newest frame."""
        if self._wants_snapshot(record):
            return self.history.append(Frame(record, self.snapshot(), self.llm.get_metrics()))
        return self.history.append(Frame(record, None, None))  # filled in if this step is drawn

    def complete(self) -> Frame | None:
        """The latest frame, with a snapshot and metrics (taken now if it had none)."""
        latest = self.history.latest
        if latest is None or (latest.snapshot is not None and latest.metrics is not None):
            return latest
        return self.history.fill(
            latest.step,
            latest.snapshot or self.snapshot(),
            latest.metrics or self.llm.get_metrics(),
        )

    def recheck(self) -> None:
        """Replace the latest frame's snapshot by a checked one (the overlay was switched on)."""
        latest = self.history.latest
        if latest is not None:
            self.history.fill(latest.step, snapshot=self.snapshot())

    def snapshot(self) -> EngineSnapshot:
        started = time.perf_counter()
        snap = self.llm.snapshot(check=self.check)
        self.snap_cost = _average(self.snap_cost, time.perf_counter() - started)
        return snap

    def _wants_snapshot(self, record: StepRecord) -> bool:
        if self.check or self.every_step is not None:
            return self.check or self.every_step
        self.step_cost = _average(self.step_cost, record.timing.total)
        return self.snap_cost <= SNAPSHOT_SHARE * self.step_cost


def _average(old: float, new: float, weight: float = 0.2) -> float:
    """Exponential moving average (the first value is taken as is)."""
    return new if old == 0.0 else old + weight * (new - old)
