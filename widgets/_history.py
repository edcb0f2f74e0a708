"""History and throttle: what the workbench keeps per step, and when it redraws.

``History`` is the workbench's one per-step store. It holds one ``Frame`` per recorded step: the
``StepRecord``, that step's timeline ``Column`` (computed once, at ``append``, by the
``StatusTracker`` the History owns) and, when they were taken, the ``EngineSnapshot`` right after
it and the ``get_metrics()`` figures at that moment::

    append(Frame(record, snapshot?, metrics?)) -> frames: deque[Frame(record, column, snap?, m?)]
                                                     |  window(last, n): (last - n, last]
        timeline view (columns; preemption markers from the records' events) <--+
        timing view (rows computed from the records at draw time)            <--+
        wb.recorder (RecordedSteps: DataFrames of the records)               <--+
        time travel, block grid, metrics panel (snapshot / metrics at or before a step)

``clear()`` empties all of it (and the tracker). It is bounded twice: by a number of steps and by
an estimate of the bytes the snapshots hold, so a cache of 100k blocks keeps fewer snapshots than
one of 64; a dropped frame takes its record, column and snapshot with it, so every view draws the
same kept steps. A step without its own snapshot or metrics is drawn with the nearest earlier ones.

``Throttle`` decides when a view may redraw: at most every ``interval`` seconds, and never so often
that drawing takes more than ``max_share`` of the wall time (a slow draw stretches the interval):
with the workbench attached, the engine keeps >= 90% of its bare throughput (see
benchmarks/workbench_overhead.py).
"""

from __future__ import annotations

import bisect
import dataclasses
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from nanovllm.engine.core.events import StepRecord
from nanovllm.engine.observe.recorder import Recorder
from nanovllm.engine.observe.snapshot import EngineSnapshot

from ._timeline import Column, StatusTracker

# Rough Python-object costs, for the memory estimate only.
_BYTES_PER_OWNER = 160  # dict entry + tuple of seq ids + token-range tuple
_BYTES_PER_SEQUENCE = 400  # SequenceSnapshot + its block-table tuple


@dataclass(frozen=True)
class Frame:
    """Everything the views draw for one step."""

    record: StepRecord
    snapshot: EngineSnapshot | None  # None when not taken at this step (see Workbench)
    metrics: dict[str, Any] | None = None  # likewise
    column: Column | None = None  # the step's sequence states; set by History.append

    @property
    def step(self) -> int:
        return self.record.step


def snapshot_bytes(snap: EngineSnapshot) -> int:
    arrays = sum(
        a.nbytes
        for a in (snap.block_state, snap.ref_count, snap.has_hash, snap.block_hash,
                  snap.parent_hash, snap.has_parent, snap.free_order)
        if a is not None
    )  # fmt: skip
    blocks_in_tables = sum(len(s.block_table) for s in snap.sequences)
    return (
        arrays
        + _BYTES_PER_OWNER * len(snap.owners)
        + _BYTES_PER_SEQUENCE * len(snap.sequences)
        + 8 * blocks_in_tables
    )


def _nbytes(frame: Frame) -> int:
    return snapshot_bytes(frame.snapshot) if frame.snapshot is not None else 0


class History:
    """Frames in step order, oldest dropped first (by count, then by snapshot bytes)."""

    def __init__(self, max_steps: int = 10_000, max_bytes: int = 256 * 2**20):
        self.max_steps = max_steps
        self.max_bytes = max_bytes
        self.frames: deque[Frame] = deque()
        self.nbytes = 0
        self.states = StatusTracker()  # the alive sequences' statuses, for each frame's column
        self.version = 0  # changes whenever the kept records do (RecordedSteps caches on it)

    def __len__(self) -> int:
        return len(self.frames)

    def clear(self) -> None:
        """Forget every step: the frames and the statuses their columns were computed from."""
        self.frames.clear()
        self.nbytes = 0
        self.states.clear()
        self.version += 1

    def append(self, frame: Frame) -> Frame:
        """Keep ``frame`` (with its timeline column computed now); returns the kept frame."""
        assert not self.frames or frame.step > self.frames[-1].step, (
            "frames must come in step order"
        )
        frame = dataclasses.replace(frame, column=self.states.column(frame.record))
        self.frames.append(frame)
        self.nbytes += _nbytes(frame)
        while len(self.frames) > self.max_steps or (
            self.nbytes > self.max_bytes and len(self.frames) > 1
        ):
            self.nbytes -= _nbytes(self.frames.popleft())
        self.version += 1
        return frame

    @property
    def first_step(self) -> int | None:
        return self.frames[0].step if self.frames else None

    @property
    def last_step(self) -> int | None:
        return self.frames[-1].step if self.frames else None

    @property
    def latest(self) -> Frame | None:
        return self.frames[-1] if self.frames else None

    def _index(self, step: int) -> int:
        """Index of the last frame with ``frame.step <= step`` (-1 if none)."""
        steps = _StepView(self.frames)
        return bisect.bisect_right(steps, step) - 1

    def window(self, last_step: int, num_steps: int) -> list[Frame]:
        """The kept frames with ``last_step - num_steps < step <= last_step``, oldest first.
        O(window) near the end of the history, where the live views read."""
        hi = self._index(last_step) + 1
        lo = bisect.bisect_right(_StepView(self.frames), last_step - num_steps)
        return [self.frames[i] for i in range(lo, hi)]

    def at(self, step: int) -> Frame:
        """The frame of ``step``; raises ``KeyError`` when that step is not (or no longer) kept."""
        i = self._index(step)
        if i < 0 or self.frames[i].step != step:
            raise KeyError(step)
        return self.frames[i]

    def fill(
        self,
        step: int,
        snapshot: EngineSnapshot | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> Frame:
        """Attach (or replace) the snapshot and/or metrics of a kept step (e.g. taken at a
        redraw)."""
        i = self._index(step)
        if i < 0 or self.frames[i].step != step:
            raise KeyError(step)
        old = self.frames[i]
        new = dataclasses.replace(
            old, snapshot=snapshot or old.snapshot, metrics=metrics or old.metrics
        )
        self.nbytes += _nbytes(new) - _nbytes(old)
        self.frames[i] = new
        return new

    def nearest(self, step: int, field: str) -> Frame | None:
        """The frame of ``step``, or the nearest earlier one, whose ``field`` was taken."""
        i = self._index(step)
        while i >= 0 and getattr(self.frames[i], field) is None:
            i -= 1
        return self.frames[i] if i >= 0 else None

    def snapshot_at(self, step: int) -> EngineSnapshot | None:
        """The snapshot taken after ``step``, or the nearest earlier one kept."""
        frame = self.nearest(step, "snapshot")
        return frame.snapshot if frame is not None else None


class _StepView:
    """A read-only sequence of frame steps for bisect (no copy of the deque)."""

    def __init__(self, frames: deque[Frame]):
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> int:
        return self.frames[i].step


class RecordedSteps:
    """``wb.recorder``: the History's records as the engine ``Recorder``'s DataFrames (``steps``,
    ``scheduled``, ``events``, ``sequences``), read-only; nothing is stored twice."""

    def __init__(self, history: History):
        self.history = history
        self._cache: tuple[int, Recorder] | None = None  # (history.version, replayed recorder)

    @property
    def max_steps(self) -> int:
        return self.history.max_steps

    @property
    def records(self) -> list[StepRecord]:
        return [f.record for f in self.history.frames]

    def _recorder(self) -> Recorder:
        if self._cache is None or self._cache[0] != self.history.version:
            rec = Recorder(max_steps=None)
            for f in self.history.frames:
                rec.on_step(f.record)
            self._cache = (self.history.version, rec)
        return self._cache[1]

    @property
    def steps(self):
        return self._recorder().steps

    @property
    def scheduled(self):
        return self._recorder().scheduled

    @property
    def events(self):
        return self._recorder().events

    @property
    def sequences(self):
        return self._recorder().sequences


class Throttle:
    """``due()`` is True at most every ``interval`` s, and rarer when drawing is slow: the gap is at
    least ``cost / max_share``, where ``cost`` is a moving average of the CPU time a draw took
    (CPU, not wall time: a draw the OS paused must not stop the views), capped at
    ``max_interval``."""

    def __init__(self, interval: float = 0.1, max_share: float = 0.02, max_interval: float = 2.0):
        self.interval, self.max_share, self.max_interval = interval, max_share, max_interval
        self.last = float("-inf")
        self.cost = 0.0  # seconds of CPU per draw, averaged

    @property
    def gap(self) -> float:
        return min(
            max(self.interval, self.cost / self.max_share), max(self.interval, self.max_interval)
        )

    def due(self, now: float | None = None) -> bool:
        now = time.perf_counter() if now is None else now
        return now - self.last >= self.gap

    def done(self, cost: float, now: float | None = None) -> None:
        """Record a draw that ended ``now`` and took ``cost`` seconds of CPU."""
        self.cost = cost if self.cost == 0.0 else self.cost + 0.3 * (cost - self.cost)
        self.last = time.perf_counter() if now is None else now
