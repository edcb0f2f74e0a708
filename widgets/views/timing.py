"""Step timing: where each step's time went, and how many prefill / decode tokens it computed.

::

    %   | ##          top: each step's time split into its parts (schedule, prepare, forward,
        |                  sample, postprocess), as shares of the step: the small host parts stay
        | ## ## # # #      visible next to a long forward; the milliseconds are on hover
    tok | ==          bottom: prefill tokens and decode tokens per step (stacked)
        | == -- - - -
          10 11 12 13  step

Reads ``StepRecord.timing`` and its prefill / decode token counts only, from the context's window
of frames (a few hundred rows at most, computed at draw time). A record that ran nothing (an idle
record: an abort's events) is not a step and is left out; the steps are categories, so that
leaves no gap.
"""

from __future__ import annotations

import numpy as np
from plotly.subplots import make_subplots

from ..model.states import is_idle, value_of
from .base import DrawContext, View
from .figures import WIDE_FIGURE_WIDTH, Figure, bars, step_labels

PARTS = ("schedule", "prepare", "forward", "sample", "postprocess")
# five parts and two token kinds, seven colours no two alike (forward teal, decode tokens blue)
PART_COLORS = ("#94a3b8", "#f59e0b", "#14b8a6", "#84cc16", "#ec4899")
PREFILL_COLOR, DECODE_COLOR = "#8b5cf6", "#3b82f6"
# one row per step: step, prefill tokens, decode tokens, then the seconds of each part, then total
_COLS = ("step", "prefill", "decode", *PARTS, "total")


def steps_shown(frames) -> list:
    """The records of the frames that are steps (not idle records), oldest first."""
    return [f.record for f in frames if not is_idle(f.record)]


class TimingView(View):
    name, attribute = "timing", "timing_view"

    def build(self):
        fig = make_subplots(
            rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.6, 0.4]
        )
        share = "%{customdata:.2f} ms (%{y:.1f}%)"
        for name, color in zip(PARTS, PART_COLORS, strict=True):
            hover = f"step %{{x}} {name}: {share}<extra></extra>"
            fig.add_trace(bars(name, color, hover, legendgroup="time"), row=1, col=1)
        for name, color in (("prefill tokens", PREFILL_COLOR), ("decode tokens", DECODE_COLOR)):
            hover = f"step %{{x}}: %{{y}} {name}<extra></extra>"
            fig.add_trace(bars(name, color, hover, legendgroup="tokens"), row=2, col=1)
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
        fig.update_yaxes(title_text="% of step", range=[0, 100], row=1, col=1, gridcolor="#eee")
        fig.update_yaxes(title_text="tokens", row=2, col=1, gridcolor="#eee")
        fig.update_xaxes(type="category")
        fig.update_xaxes(title_text="step", row=2, col=1)
        return self.boxed(Figure(fig), empty=True)

    @staticmethod
    def window_arrays(frames) -> tuple[np.ndarray, list[str]]:
        """Rows (a [n, len(_COLS)] float array) and phases of the steps among ``frames``."""
        records = steps_shown(frames)
        rows = [_row(r) for r in records]
        phases = [value_of(r.phase) if r.error is None else "failed" for r in records]
        return np.array(rows, dtype=float).reshape(-1, len(_COLS)), phases

    def draw(self, ctx: DrawContext) -> None:
        a, phases = self.window_arrays(ctx.frames)
        steps = step_labels(a[:, 0])  # the values as numpy arrays: sent without a per-item pass
        with self.figure.batch_update():
            share = 100 / np.maximum(a[:, 3 : 3 + len(PARTS)].sum(axis=1), 1e-12)
            for k, trace in enumerate(self.figure.data[: len(PARTS)]):
                trace.x, trace.y, trace.customdata = steps, a[:, 3 + k] * share, a[:, 3 + k] * 1e3
            pre, dec = self.figure.data[len(PARTS) :]
            pre.x, pre.y = steps, a[:, 1].astype(np.int64)
            dec.x, dec.y = steps, a[:, 2].astype(np.int64)
            self.figure.layout.title.text = _summary(a, phases)
            self.fit(not phases)  # no steps (a reset): the title line alone


def _row(r) -> tuple:
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
    # as get_metrics() counts them: a mixed step is a prefill step
    split = [None if p == "failed" else p in ("prefill", "mixed") for p in phases]
    for kind, has_prefill in (("prefill", True), ("decode", False)):
        mask = np.array([x is has_prefill for x in split], dtype=bool)
        if mask.any():
            ms = a[mask, -1].mean() * 1e3
            tok = a[mask, 1 if kind == "prefill" else 2].sum() / max(a[mask, -1].sum(), 1e-12)
            parts.append(f"{kind} {ms:.1f} ms/step, {tok:,.0f} tok/s")
    head = f"Step timing, last {len(phases)} steps" if phases else "Step timing: no steps yet"
    return head + ("<br><sup>" + "; ".join(parts) + "</sup>" if parts else "")
