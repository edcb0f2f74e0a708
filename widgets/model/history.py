"""History: what the workbench keeps per step, the one store every view draws from.

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

``wb.history.timeline`` reads the columns back (``states()``, ``to_frame()``); ``wb.recorder``
(``RecordedSteps``) gives the records as the engine ``Recorder``'s DataFrames. The History knows
nothing of views, pages or engines: when to draw is pacing.py's, what to draw is views/'.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nanovllm.engine.observe.recorder import Recorder
from nanovllm.engine.observe.snapshot import EngineSnapshot

from .states import Column, SequenceTimeline, StatusTracker

if TYPE_CHECKING:  # the engine's record type, as nanovllm.engine.observe hands it out
    from nanovllm.engine.observe.recorder import StepRecord

# Rough Python-object costs, for the memory estimate only.
_BYTES_PER_OWNER = 160  # dict entry + tuple of seq ids + token-range tuple
_BYTES_PER_SEQUENCE = 400  # SequenceSnapshot + its block-table tuple


@dataclass(frozen=True)
class Frame:
    """Everything the views draw for one step."""

    record: StepRecord
    snapshot: EngineSnapshot | None  # None when not taken at this step (see frames.py)
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

    def back_from(self, step: int, limit: int) -> Iterator[Frame]:
        """The kept frames from ``step`` back, newest first, at most ``limit`` of them."""
        i = self._index(step)
        for k in range(i, max(-1, i - limit), -1):
            yield self.frames[k]

    @property
    def timeline(self) -> SequenceTimeline:
        """The sequence states of every kept step (``states()``, ``to_frame()``)."""
        return SequenceTimeline(self)


class _StepView:
    """A read-only sequence of frame steps for bisect (no copy of the deque)."""

    def __init__(self, frames: deque[Frame]):
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> int:
        return self.frames[i].step


def _table(name: str) -> property:
    """``Recorder.<name>`` (a DataFrame) of the kept steps, as a read-only property."""
    return property(lambda self: getattr(self._recorder(), name), doc=f"``Recorder.{name}``")


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

    steps, scheduled, events, sequences = map(_table, ("steps", "scheduled", "events", "sequences"))
