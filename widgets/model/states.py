"""Sequence states over steps: a row per request, a column per step, preemptions marked.

::

    step ->     10   11   12   13   14
    seq 0       P    D    D    D    F        P prefilling   D decoding   F finished (this step)
    seq 1       P    D    x    p    P        x preempted this step (marker)  p still preempted
    seq 2       w    w    w    P    D        w waiting      r running, not scheduled this step

The grid comes from ``StepRecord``s alone: the phase of a scheduled sequence from the record's
scheduled columns (``seq_ids``, ``is_decode``), every other state from the ``SequenceEvent``s seen
so far. ``StatusTracker`` holds those statuses; ``History`` owns one and stores each step's
``Column`` in its ``Frame`` when the step is appended, so the timeline has no store of its own.

An idle record (one that scheduled nothing: the engine hands an abort's events to its observers
that way, between two steps) is not a step a learner should see as one. Its column is kept (the
data stays whole: ``states()``), but ``timeline_window`` leaves it out of the grid and draws what
finished in it in the column of the step before, where the request last ran.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WAITING, PREFILL, DECODE, IDLE, PREEMPTED, FINISHED = range(6)
STATE_NAMES = (
    "waiting",
    "prefilling",
    "decoding",
    "running (not scheduled)",
    "preempted",
    "finished",
)
_FROM_STATUS = {"WAITING": WAITING, "RUNNING": IDLE, "PREEMPTED": PREEMPTED}


def value_of(member) -> str:
    """A str enum (``SequenceStatus``, ``Phase``) or its value, as a str ("FINISHED")."""
    return getattr(member, "value", member)


def is_idle(record) -> bool:
    """A record that scheduled nothing and did not fail: events only (e.g. an abort's)."""
    return not record.seq_ids and record.error is None


@dataclass(frozen=True)
class Column:
    step: int
    seq_ids: np.ndarray  # int64, sorted
    codes: np.ndarray  # int8, one state code per seq id
    idle: bool = False  # the record scheduled nothing (see the module docstring)


class StatusTracker:
    """The status of every sequence alive so far, from the ``SequenceEvent``s seen;
    ``column(record)`` gives the state codes of one step. Owned by ``History``, which feeds it
    every appended record once, in step order; O(alive sequences) per step."""

    def __init__(self):
        self._status: dict[int, str] = {}  # sequences not yet finished -> SequenceStatus value

    def clear(self) -> None:
        self._status.clear()

    def column(self, record) -> Column:
        finished_now = set()
        for e in record.events:
            self._status[e.seq_id] = value_of(e.after)
            if value_of(e.after) == "FINISHED":
                finished_now.add(e.seq_id)
        phase = dict(zip(record.seq_ids, record.is_decode, strict=True))  # seq id -> is a decode
        for seq_id in phase:
            self._status.setdefault(seq_id, "RUNNING")  # seen first mid-flight
        ids = sorted(self._status)
        codes = [
            FINISHED
            if i in finished_now
            else (DECODE if phase[i] else PREFILL)
            if i in phase
            else _FROM_STATUS[self._status[i]]
            for i in ids
        ]
        for i in finished_now:
            del self._status[i]
        return Column(
            record.step,
            np.array(ids, dtype=np.int64),
            np.array(codes, dtype=np.int8),
            idle=is_idle(record),
        )


class SequenceTimeline:
    """The timeline as a ``History`` keeps it (each frame's ``column``), read-only:
    ``wb.history.timeline``."""

    def __init__(self, history):
        self.history = history

    @property
    def columns(self) -> list[Column]:
        return [f.column for f in self.history.frames]

    def states(self) -> dict[int, dict[int, int]]:
        """{seq id: {step: state code}} over every kept record (idle ones too)."""
        out: dict[int, dict[int, int]] = {}
        for col in self.columns:
            for i, c in zip(col.seq_ids.tolist(), col.codes.tolist(), strict=True):
                out.setdefault(i, {})[col.step] = c
        return out

    def to_frame(self):
        """The kept timeline as a pandas DataFrame: one row per (step, seq_id), its state."""
        import pandas as pd

        rows = [
            (c.step, i, STATE_NAMES[k])
            for c in self.columns
            for i, k in zip(c.seq_ids.tolist(), c.codes.tolist(), strict=True)
        ]
        return pd.DataFrame(rows, columns=["step", "seq_id", "state"])


@dataclass(frozen=True)
class TimelineGrid:
    """What the timeline draws: ``z[row, col]`` is the state code of ``ids[row]`` at
    ``steps[col]`` (NaN where the sequence was not alive); ``preemptions`` are (step, seq id)."""

    steps: np.ndarray
    ids: list[int]
    z: np.ndarray
    preemptions: list[tuple[int, int]]


def timeline_window(frames, max_rows: int) -> TimelineGrid:
    """The grid of ``frames`` (oldest first; each with its ``column``), at most ``max_rows``
    sequences (see ``pick_rows``). Idle columns are left out; a sequence finished in one is
    marked finished in the column before it."""
    shown = [f for f in frames if not f.column.idle]
    cols = [f.column for f in shown]
    seq_ids = np.concatenate([c.seq_ids for c in cols]) if cols else np.zeros(0, np.int64)
    codes = np.concatenate([c.codes for c in cols]) if cols else np.zeros(0, np.int8)
    col = np.repeat(np.arange(len(cols)), [len(c.seq_ids) for c in cols])
    ids = pick_rows(seq_ids, codes, max_rows)
    keep = np.isin(seq_ids, ids)
    z = np.full((len(ids), len(cols)), np.nan)
    z[np.searchsorted(ids, seq_ids[keep]), col[keep]] = codes[keep]
    _fold_idle_finishes(frames, [c.step for c in cols], ids, z)
    rows = set(ids.tolist())
    marks = [
        (f.step, e.seq_id)
        for f in shown
        for e in f.record.events
        if value_of(e.after) == "PREEMPTED" and e.seq_id in rows
    ]
    return TimelineGrid(np.array([c.step for c in cols], dtype=np.int64), ids.tolist(), z, marks)


def _fold_idle_finishes(frames, steps: list[int], ids: np.ndarray, z: np.ndarray) -> None:
    """Mark each sequence an idle record finished as finished in the last shown column before
    it where the sequence has a cell."""
    row_of = {int(i): r for r, i in enumerate(ids.tolist())}
    for f in frames:
        if not f.column.idle:
            continue
        before = [k for k, s in enumerate(steps) if s < f.step]
        for seq_id, code in zip(f.column.seq_ids.tolist(), f.column.codes.tolist(), strict=True):
            r = row_of.get(seq_id)
            if code != FINISHED or r is None or not before:
                continue
            alive = [k for k in before if not np.isnan(z[r, k])]
            if alive:
                z[r, alive[-1]] = FINISHED


def pick_rows(seq_ids: np.ndarray, codes: np.ndarray, max_rows: int) -> np.ndarray:
    """Which sequences get a row, sorted: first those that did something in the window (ran, were
    preempted or finished; the newest if too many), then those only waiting, next in line first."""
    active = np.unique(seq_ids[codes != WAITING])[-max_rows:]
    waiting = np.setdiff1d(np.unique(seq_ids), active)[: max_rows - len(active)]
    return np.sort(np.concatenate([active, waiting]))
