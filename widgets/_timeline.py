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
``SequenceTimeline`` reads the columns back (``states()``, ``to_frame()``, ``window()``; the
preemption markers are the window's records' events); ``TimelineView`` draws a window of it into
one FigureWidget (Heatmap + preemption markers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from nanovllm.engine.core.events import StepRecord
from nanovllm.engine.core.sequence import SequenceStatus

from ._blocks import discrete_colorscale
from ._json import grid as json_grid
from ._layout import FIGURE_WIDTH

if TYPE_CHECKING:
    from ._history import History

WAITING, PREFILL, DECODE, IDLE, PREEMPTED, FINISHED = range(6)
STATE_NAMES = (
    "waiting",
    "prefilling",
    "decoding",
    "running (not scheduled)",
    "preempted",
    "finished",
)
STATE_COLORS = ("#cbd5e1", "#8b5cf6", "#3b82f6", "#93c5fd", "#fca5a5", "#10b981")
_FROM_STATUS = {
    SequenceStatus.WAITING: WAITING,
    SequenceStatus.RUNNING: IDLE,
    SequenceStatus.PREEMPTED: PREEMPTED,
}


@dataclass(frozen=True)
class Column:
    step: int
    seq_ids: np.ndarray  # int64, sorted
    codes: np.ndarray  # int8, one state code per seq id


class StatusTracker:
    """The status of every sequence alive so far, from the ``SequenceEvent``s seen;
    ``column(record)`` gives the state codes of one step. Owned by ``History``, which feeds it
    every appended record once, in step order; O(alive sequences) per step."""

    def __init__(self):
        self._status: dict[int, SequenceStatus] = {}  # sequences not yet finished

    def clear(self) -> None:
        self._status.clear()

    def column(self, record: StepRecord) -> Column:
        finished_now = set()
        for e in record.events:
            self._status[e.seq_id] = e.after
            if e.after is SequenceStatus.FINISHED:
                finished_now.add(e.seq_id)
        phase = dict(zip(record.seq_ids, record.is_decode, strict=True))  # seq id -> is a decode
        for seq_id in phase:
            self._status.setdefault(seq_id, SequenceStatus.RUNNING)  # seen first mid-flight
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
        return Column(record.step, np.array(ids, dtype=np.int64), np.array(codes, dtype=np.int8))


class SequenceTimeline:
    """The timeline as ``History`` keeps it (each frame's ``column``): a read-only view."""

    def __init__(self, history: History):
        self.history = history

    @property
    def columns(self) -> list[Column]:
        return [f.column for f in self.history.frames]

    def states(self) -> dict[int, dict[int, int]]:
        """{seq id: {step: state code}} over every kept step (for tests and notebooks)."""
        out: dict[int, dict[int, int]] = {}
        for col in self.columns:
            for i, c in zip(col.seq_ids.tolist(), col.codes.tolist(), strict=True):
                out.setdefault(i, {})[col.step] = c
        return out

    def to_frame(self):
        """The kept timeline as a pandas DataFrame: one row per (step, seq_id), its state name."""
        import pandas as pd

        rows = [
            (c.step, i, STATE_NAMES[k])
            for c in self.columns
            for i, k in zip(c.seq_ids.tolist(), c.codes.tolist(), strict=True)
        ]
        return pd.DataFrame(rows, columns=["step", "seq_id", "state"])

    def window(self, last_step: int, num_steps: int, max_rows: int):
        """(steps, seq ids, z, preemptions) for the steps in (last_step - num_steps, last_step]: z
        is a float array [len(ids), len(steps)] of state codes, NaN where a sequence was not alive;
        preemptions are the (step, seq id) of the shown rows' preemptions. Rows: at most
        ``max_rows`` (see ``pick_rows``)."""
        frames = self.history.window(last_step, num_steps)
        cols = [f.column for f in frames]
        seq_ids = np.concatenate([c.seq_ids for c in cols]) if cols else np.zeros(0, np.int64)
        codes = np.concatenate([c.codes for c in cols]) if cols else np.zeros(0, np.int8)
        col = np.repeat(np.arange(len(cols)), [len(c.seq_ids) for c in cols])
        ids = pick_rows(seq_ids, codes, max_rows)
        shown = np.isin(seq_ids, ids)
        z = np.full((len(ids), len(cols)), np.nan)
        z[np.searchsorted(ids, seq_ids[shown]), col[shown]] = codes[shown]
        rows = set(ids.tolist())
        marks = [
            (f.step, e.seq_id)
            for f in frames
            for e in f.record.events
            if e.after is SequenceStatus.PREEMPTED and e.seq_id in rows
        ]
        return np.array([c.step for c in cols], dtype=np.int64), ids.tolist(), z, marks


def pick_rows(seq_ids: np.ndarray, codes: np.ndarray, max_rows: int) -> np.ndarray:
    """Which sequences get a row, sorted: first those that did something in the window (ran, were
    preempted or finished; the newest if too many), then those only waiting, next in line first."""
    active = np.unique(seq_ids[codes != WAITING])[-max_rows:]
    waiting = np.setdiff1d(np.unique(seq_ids), active)[: max_rows - len(active)]
    return np.sort(np.concatenate([active, waiting]))


class TimelineView:
    """Sequence states of the last ``window`` steps, at most ``max_rows`` requests."""

    def __init__(self, history: History, window: int = 100, max_rows: int = 40):
        self.window, self.max_rows = window, max_rows
        self.timeline = SequenceTimeline(history)
        n = len(STATE_COLORS)
        self.figure = go.FigureWidget(
            data=[
                go.Heatmap(
                    z=[],
                    x=[],
                    y=[],
                    zmin=-0.5,
                    zmax=n - 0.5,
                    xgap=1,
                    ygap=1,
                    hoverongaps=False,
                    colorscale=discrete_colorscale(STATE_COLORS),
                    name="states",
                    colorbar=dict(
                        tickvals=list(range(n)),
                        ticktext=list(STATE_NAMES),
                        thickness=12,
                        len=0.9,
                        tickfont=dict(size=10),
                    ),
                    hovertemplate="%{y}, step %{x}: %{text}<extra></extra>",
                ),
                go.Scatter(
                    x=[],
                    y=[],
                    mode="markers",
                    name="✕ preempted at this step",
                    hovertemplate="%{y} preempted at step %{x}<extra></extra>",
                    marker=dict(symbol="x-thin", size=11, line=dict(width=2, color="#b91c1c")),
                ),
            ],
            layout=go.Layout(
                title=dict(text="Sequence states", font=dict(size=13), x=0.01, xanchor="left"),
                width=FIGURE_WIDTH,
                height=320,
                margin=dict(l=60, r=90, t=40, b=40),  # r: room for the colorbar's state names
                plot_bgcolor="white",
                showlegend=True,
                legend=dict(orientation="h", x=0.45, y=1.0, yanchor="bottom", font=dict(size=10)),
                xaxis=dict(title="step", showgrid=False, zeroline=False),
                yaxis=dict(autorange="reversed", showgrid=False, type="category"),
            ),
        )

    def draw(self, last_step: int | None, title: str | None = None) -> None:
        if last_step is None:
            steps, ids, z, marks = np.zeros(0, np.int64), [], np.zeros((0, 0)), []
        else:
            steps, ids, z, marks = self.timeline.window(last_step, self.window, self.max_rows)
        labels = [f"seq {i}" for i in ids]
        text = _NAMES[
            np.where(np.isnan(z), len(STATE_NAMES), z).astype(np.int64)
        ]  # arrays: fast to send
        with self.figure.batch_update():
            grid, pre = self.figure.data
            grid.x, grid.y, grid.z, grid.text = steps, labels, json_grid(z), text
            pre.x = [s for s, _ in marks]
            pre.y = [f"seq {i}" for _, i in marks]
            self.figure.layout.height = max(220, 90 + 18 * len(ids))
            if title is not None:
                self.figure.layout.title.text = title


_NAMES = np.array([*STATE_NAMES, ""], dtype=object)  # code -> name; the last entry is for NaN
