"""Step timing: where each step's time went, and how many prefill / decode tokens it computed.

::

    ms  | ##          top: stacked bars of StepTiming (schedule, prepare, forward, sample,
        |                  postprocess)
        | ## ## # # #
    tok | ==          bottom: prefill tokens and decode tokens per step (stacked)
        | == -- - - -
          10 11 12 13  step

Reads ``StepRecord.timing`` and its prefill / decode token counts only, from the records the
``History`` keeps: the rows of the window (the last ``window`` steps up to the step shown) are
computed at draw time, a few hundred at most; the view stores nothing per step. One FigureWidget
with two rows, updated in place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from nanovllm.engine.core.batch import Phase
from nanovllm.engine.core.events import StepRecord

from ._layout import WIDE_FIGURE_WIDTH

if TYPE_CHECKING:
    from ._history import History

PARTS = ("schedule", "prepare", "forward", "sample", "postprocess")
# five parts and two token kinds, seven colours no two alike (forward teal, decode tokens blue)
PART_COLORS = ("#94a3b8", "#f59e0b", "#14b8a6", "#84cc16", "#ec4899")
PREFILL_COLOR, DECODE_COLOR = "#8b5cf6", "#3b82f6"
# one row per step: step, prefill tokens, decode tokens, then the seconds of each part, then total
_COLS = ("step", "prefill", "decode", *PARTS, "total")


class TimingView:
    def __init__(self, history: History, window: int = 100):
        self.history, self.window = history, window
        fig = make_subplots(
            rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.6, 0.4]
        )
        for name, color in zip(PARTS, PART_COLORS, strict=True):
            fig.add_trace(
                go.Bar(
                    x=[],
                    y=[],
                    name=name,
                    marker_color=color,
                    legendgroup="time",
                    hovertemplate=f"step %{{x}} {name}: %{{customdata:.2f}} ms "
                    f"(%{{y:.1f}}%)<extra></extra>",
                ),
                row=1,
                col=1,
            )
        for name, color in (("prefill tokens", PREFILL_COLOR), ("decode tokens", DECODE_COLOR)):
            fig.add_trace(
                go.Bar(
                    x=[],
                    y=[],
                    name=name,
                    marker_color=color,
                    legendgroup="tokens",
                    hovertemplate=f"step %{{x}}: %{{y}} {name}<extra></extra>",
                ),
                row=2,
                col=1,
            )
        fig.update_layout(
            barmode="stack",
            width=WIDE_FIGURE_WIDTH,
            height=380,
            bargap=0.1,
            margin=dict(l=50, r=10, t=60, b=40),
            title=dict(text="Step timing", font=dict(size=13), x=0.01, xanchor="left"),
            plot_bgcolor="white",
            legend=dict(orientation="h", y=-0.18, font=dict(size=10)),
        )
        # shares of each step's time: the small host parts stay visible next to a long forward
        fig.update_yaxes(title_text="% of step", range=[0, 100], row=1, col=1, gridcolor="#eee")
        fig.update_yaxes(title_text="tokens", row=2, col=1, gridcolor="#eee")
        fig.update_xaxes(title_text="step", row=2, col=1)
        self.figure = go.FigureWidget(fig)

    def window_arrays(self, last_step: int | None) -> tuple[np.ndarray, list[str]]:
        """Rows (as a [n, len(_COLS)] float array) and phases of the window ending at
        ``last_step``."""
        records = (
            [f.record for f in self.history.window(last_step, self.window)]
            if last_step is not None
            else []
        )
        rows = [_row(r) for r in records]
        phases = [r.phase if r.error is None else "failed" for r in records]
        return np.array(rows, dtype=float).reshape(-1, len(_COLS)), phases

    def draw(self, last_step: int | None, title: str | None = None) -> None:
        a, phases = self.window_arrays(last_step)
        steps = a[:, 0].astype(np.int64)  # numpy arrays: validated and sent without a per-item pass
        with self.figure.batch_update():
            share = 100 / np.maximum(a[:, 3 : 3 + len(PARTS)].sum(axis=1), 1e-12)
            for k, trace in enumerate(self.figure.data[: len(PARTS)]):
                trace.x, trace.y, trace.customdata = steps, a[:, 3 + k] * share, a[:, 3 + k] * 1e3
            pre, dec = self.figure.data[len(PARTS) :]
            pre.x, pre.y = steps, a[:, 1].astype(np.int64)
            dec.x, dec.y = steps, a[:, 2].astype(np.int64)
            self.figure.layout.title.text = title or _summary(a, phases)


def _row(r: StepRecord) -> tuple:
    t = r.timing
    return (
        r.step,
        r.num_prefill_tokens,
        r.num_decode_tokens,
        t.schedule,
        t.prepare,
        t.forward,
        t.sample,
        t.postprocess,
        t.total,
    )


def _summary(a: np.ndarray, phases: list[str]) -> str:
    """'Step timing, last 100 steps: prefill 12.3 ms/step, ...' (the window's own averages)."""
    parts = []
    # Phase's rule, as in get_metrics(): a mixed step counts as a prefill step
    split = [None if p == "failed" else Phase(p).has_prefill for p in phases]
    for kind, has_prefill in (("prefill", True), ("decode", False)):
        mask = np.array([x is has_prefill for x in split], dtype=bool)
        if mask.any():
            ms = a[mask, -1].mean() * 1e3
            tok = a[mask, 1 if kind == "prefill" else 2].sum() / max(a[mask, -1].sum(), 1e-12)
            parts.append(f"{kind} {ms:.1f} ms/step, {tok:,.0f} tok/s")
    head = f"Step timing, last {len(phases)} steps" if phases else "Step timing"
    return head + ("<br><sup>" + "; ".join(parts) + "</sup>" if parts else "")
