"""Sequence states over steps: a row per request, a column per step, preemptions marked.

::

    step ->     10   11   12   13   14
    seq 0       P    D    D    D    F        P prefilling   D decoding   F finished (this step)
    seq 1       P    D    x    p    P        x preempted this step (marker)  p still preempted
    seq 2       w    w    w    P    D        w waiting      r running, not scheduled this step

``SequenceTimeline`` derives the grid from ``StepRecord``s alone: the phase of a scheduled sequence
comes from the record's scheduled columns (``seq_ids``, ``is_decode``), every other state from the
``SequenceEvent``s seen so far.
``TimelineView`` draws a window of it into one FigureWidget (Heatmap + preemption markers).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from nanovllm.engine.core.events import StepRecord
from nanovllm.engine.core.sequence import SequenceStatus

from ._blocks import discrete_colorscale
from ._json import grid as json_grid
from ._layout import FIGURE_WIDTH

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


class SequenceTimeline:
    """Per step, the state code of every sequence alive in it. O(alive sequences) per step."""

    def __init__(self, max_steps: int = 10_000):
        self.columns: deque[Column] = deque(maxlen=max_steps)
        self.preemptions: deque[tuple[int, int]] = deque(maxlen=max_steps)  # (step, seq id)
        self.finishes: dict[int, tuple[int, str]] = {}  # seq id -> (step, reason)
        self._status: dict[int, SequenceStatus] = {}  # sequences not yet finished

    def clear(self) -> None:
        self.columns.clear()
        self.preemptions.clear()
        self.finishes.clear()
        self._status.clear()

    def ingest(self, record: StepRecord) -> Column:
        finished_now = set()
        for e in record.events:
            self._status[e.seq_id] = e.after
            if e.after is SequenceStatus.PREEMPTED:
                self.preemptions.append((record.step, e.seq_id))
            elif e.after is SequenceStatus.FINISHED:
                finished_now.add(e.seq_id)
                self.finishes[e.seq_id] = (record.step, e.reason)
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
        col = Column(record.step, np.array(ids, dtype=np.int64), np.array(codes, dtype=np.int8))
        self.columns.append(col)
        return col

    def states(self) -> dict[int, dict[int, int]]:
        """{seq id: {step: state code}} over every kept step (for tests and notebooks)."""
        out: dict[int, dict[int, int]] = {}
        for col in self.columns:
            for i, c in zip(col.seq_ids.tolist(), col.codes.tolist(), strict=True):
                out.setdefault(i, {})[col.step] = c
        return out

    def to_frame(self):
        """The kept timeline as a pandas DataFrame: one row per (step, seq_id) with its state name."""
        import pandas as pd

        rows = [
            (c.step, i, STATE_NAMES[k])
            for c in self.columns
            for i, k in zip(c.seq_ids.tolist(), c.codes.tolist(), strict=True)
        ]
        return pd.DataFrame(rows, columns=["step", "seq_id", "state"])

    def window(self, last_step: int, num_steps: int, max_rows: int):
        """(steps, seq ids, z) for the ``num_steps`` steps up to ``last_step``: z is a float array
        [len(ids), len(steps)] of state codes, NaN where a sequence was not alive. Rows: at most
        ``max_rows`` (see ``pick_rows``)."""
        cols = []
        for c in reversed(self.columns):  # newest first: stop at the window's left edge
            if c.step <= last_step - num_steps:
                break
            if c.step <= last_step:
                cols.append(c)
        cols.reverse()
        seq_ids = np.concatenate([c.seq_ids for c in cols]) if cols else np.zeros(0, np.int64)
        codes = np.concatenate([c.codes for c in cols]) if cols else np.zeros(0, np.int8)
        col = np.repeat(np.arange(len(cols)), [len(c.seq_ids) for c in cols])
        ids = pick_rows(seq_ids, codes, max_rows)
        shown = np.isin(seq_ids, ids)
        z = np.full((len(ids), len(cols)), np.nan)
        z[np.searchsorted(ids, seq_ids[shown]), col[shown]] = codes[shown]
        return np.array([c.step for c in cols], dtype=np.int64), ids.tolist(), z


def pick_rows(seq_ids: np.ndarray, codes: np.ndarray, max_rows: int) -> np.ndarray:
    """Which sequences get a row, sorted: first those that did something in the window (ran, were
    preempted or finished; the newest if too many), then those only waiting, next in line first."""
    active = np.unique(seq_ids[codes != WAITING])[-max_rows:]
    waiting = np.setdiff1d(np.unique(seq_ids), active)[: max_rows - len(active)]
    return np.sort(np.concatenate([active, waiting]))


class TimelineView:
    """Sequence states of the last ``window`` steps, at most ``max_rows`` requests."""

    def __init__(self, window: int = 100, max_rows: int = 40, max_steps: int = 10_000):
        self.window, self.max_rows = window, max_rows
        self.timeline = SequenceTimeline(max_steps)
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

    def clear(self) -> None:
        self.timeline.clear()

    def ingest(self, record: StepRecord) -> None:
        self.timeline.ingest(record)

    def draw(self, last_step: int | None, title: str | None = None) -> None:
        if last_step is None:
            steps, ids, z = np.zeros(0, np.int64), [], np.zeros((0, 0))
        else:
            steps, ids, z = self.timeline.window(last_step, self.window, self.max_rows)
        labels = [f"seq {i}" for i in ids]
        text = _NAMES[
            np.where(np.isnan(z), len(STATE_NAMES), z).astype(np.int64)
        ]  # arrays: fast to send
        shown = set(ids)
        marks = [
            (s, i)
            for s, i in self.timeline.preemptions
            if i in shown and last_step is not None and last_step - self.window < s <= last_step
        ]
        with self.figure.batch_update():
            grid, pre = self.figure.data
            grid.x, grid.y, grid.z, grid.text = steps, labels, json_grid(z), text
            pre.x = [s for s, _ in marks]
            pre.y = [f"seq {i}" for _, i in marks]
            self.figure.layout.height = max(220, 90 + 18 * len(ids))
            if title is not None:
                self.figure.layout.title.text = title


_NAMES = np.array([*STATE_NAMES, ""], dtype=object)  # code -> name; the last entry is for NaN
