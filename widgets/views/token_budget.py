"""Token budget: how each step spent ``max_num_batched_tokens``.

::

    tokens | ......... budget (max_num_batched_tokens) ..........
           | ░░░░ ░░░░░░░░ ░░░░░     left
           | ▓▓▓▓ ▓▓       ▓▓▓▓▓     prefill chunks (after the decodes, first come first)
           | ████ ████ ███ ████      decodes (first: one token each, never stalled)
             10   11   12  13  step

The scheduler shares one budget per step: decodes first, then prefill chunks (notebook 04). Drawn
from the records of the context's window (idle records left out); the budget is the setup's.
"""

from __future__ import annotations

import numpy as np

from .base import DrawContext, View
from .figures import WIDE_FIGURE_WIDTH, bars, figure, step_labels
from .timing import DECODE_COLOR, PREFILL_COLOR, steps_shown

LEFT_COLOR = "#e5e7eb"


class TokenBudgetView(View):
    name, attribute = "token_budget", "token_budget_view"

    def build(self):
        hover = "step %{x}: %{y} tokens %{fullData.name}<extra></extra>"
        traces = [
            bars("decodes", DECODE_COLOR, hover),
            bars("prefill chunks", PREFILL_COLOR, hover),
            bars("left", LEFT_COLOR, hover),
        ]
        return self.boxed(
            figure(
                traces,
                title="Token budget per step",
                width=WIDE_FIGURE_WIDTH,
                height=230,
                margin=dict(l=50, r=120, t=50, b=40),  # r: the legend, beside the plot
                barmode="stack",
                bargap=0.1,
                legend=dict(x=1.02, y=1.0, yanchor="top", traceorder="reversed"),  # off the title
                xaxis=dict(title="step", type="category"),
                yaxis=dict(title="tokens", gridcolor="#eee", rangemode="tozero"),
            ),
            empty=True,
        )

    def draw(self, ctx: DrawContext) -> None:
        records = steps_shown(ctx.frames)
        budget = self.setup.token_budget or 0
        steps = step_labels(r.step for r in records)
        decode = np.array([r.num_decode_tokens for r in records], dtype=np.int64)
        prefill = np.array([r.num_prefill_tokens for r in records], dtype=np.int64)
        left = np.maximum(budget - decode - prefill, 0)
        with self.figure.batch_update():
            for trace, y in zip(self.figure.data, (decode, prefill, left), strict=True):
                trace.x, trace.y = steps, y
            used = (decode + prefill).sum() / (budget * len(records)) if budget and records else 0
            self.figure.layout.title.text = (
                f"Token budget per step: {budget:,} (max_num_batched_tokens); decodes first, "
                f"then prefill chunks; {used:.0%} used over the window"
                if records
                else f"Token budget per step: no steps yet ({budget:,}: max_num_batched_tokens)"
            )
            self.fit(not records)  # no steps (a reset): the title line alone
