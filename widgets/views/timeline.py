"""Sequence states over steps: a row per request, a column per step, preemptions marked.

::

    step ->     10   11   12   13   14
    seq 0       P    D    D    D    F        P prefilling   D decoding   F finished (this step)
    seq 1       P    D    x    p    P        x preempted this step (marker)  p still preempted
    seq 2       w    w    w    P    D        w waiting      r running, not scheduled this step

Draws the context's window of frames (their timeline columns, model/states.py), at most
``max_rows`` requests: a heatmap and the preemption markers. The steps are categories, so a step
left out (an idle record) leaves no gap. A click on a row asks to pick that request.
"""

from __future__ import annotations

import numpy as np

from ..model.states import STATE_NAMES, timeline_window
from .base import DrawContext, View, ViewSetup
from .figures import figure, json_grid, markers, state_heatmap, step_labels

STATE_COLORS = ("#cbd5e1", "#8b5cf6", "#3b82f6", "#93c5fd", "#fca5a5", "#10b981")
_NAMES = np.array([*STATE_NAMES, ""], dtype=object)  # code -> name; the last entry is for NaN


class TimelineView(View):
    """Sequence states of the last ``window`` steps, at most ``max_rows`` requests."""

    name, attribute, column = "timeline", "timeline_view", "left"

    def __init__(self, setup: ViewSetup, max_rows: int = 40):
        self.max_rows = max_rows
        super().__init__(setup)

    def build(self):
        grid = state_heatmap(
            "states",
            STATE_COLORS,
            STATE_NAMES,
            z=[],
            x=[],
            y=[],
            colorbar=dict(tickfont=dict(size=10)),
            hovertemplate="%{y}, step %{x}: %{text}<extra></extra>",
        )
        preempted = markers(
            "✕ preempted at this step",
            hovertemplate="%{y} preempted at step %{x}<extra></extra>",
            marker=dict(symbol="x-thin", size=11, line=dict(width=2, color="#b91c1c")),
        )
        return self.boxed(
            figure(
                [grid, preempted],
                title="Sequence states",
                height=320,
                margin=dict(l=60, r=90, t=40, b=40),  # r: room for the colorbar's state names
                showlegend=True,
                legend=dict(orientation="h", x=0.45, y=1.0, yanchor="bottom", font=dict(size=10)),
                xaxis=dict(title="step", showgrid=False, zeroline=False, type="category"),
                yaxis=dict(autorange="reversed", showgrid=False, type="category"),
            ),
            empty=True,
        )

    def wire(self) -> None:
        self.figure.data[0].on_click(self._on_row)

    def _on_row(self, trace, points, state) -> None:
        if points.ys:
            self.emit("request", int(str(points.ys[0]).split()[-1]))

    def draw(self, ctx: DrawContext) -> None:
        g = timeline_window(ctx.frames, self.max_rows)
        labels = [f"seq {i}" for i in g.ids]
        text = _NAMES[np.where(np.isnan(g.z), len(STATE_NAMES), g.z).astype(np.int64)]
        with self.figure.batch_update():
            grid, pre = self.figure.data
            grid.x, grid.y, grid.z, grid.text = step_labels(g.steps), labels, json_grid(g.z), text
            pre.x = step_labels(s for s, _ in g.preemptions)
            pre.y = [f"seq {i}" for _, i in g.preemptions]
            self.fit(not g.ids, max(220, 90 + 18 * len(g.ids)))
            self.figure.layout.title.text = (
                "Sequence states: no steps yet"
                if ctx.step is None
                else f"Sequence states up to step {ctx.step}"
            )
