"""Cache occupancy over time: the blocks a prefix cache holds, from its KV events, and the engine's
own KV-cache usage where its metrics are read.

::

    blocks |        ________                 ── blocks in the cache (stored, not yet removed)
           |   ____/        \\____            ·· stored so far, removed so far
           |__/      ▪▪▪▪        ▪▪▪         ▪▪ KV cache usage % (a metric; right axis)
             0     5     10    15    s since the watch began

Drawn from the context's cache source: ``occupancy()`` (a sample per event batch) and
``metric_samples`` (a sample per metrics read). The two numbers differ on purpose: the events count
every block stored and not yet removed (in use or cached-free alike), while vLLM's
``kv_cache_usage`` counts the blocks running requests hold: it drops to 0 when they finish, and
the cached blocks stay. Redrawn only when the source applied a batch or read its metrics.
"""

from __future__ import annotations

import numpy as np

from .base import DrawContext, View
from .figures import FIGURE_WIDTH, figure, lines, markers

BLOCKS_COLOR, STORED_COLOR, REMOVED_COLOR, USAGE_COLOR = "#2563eb", "#10b981", "#ef4444", "#f59e0b"


class OccupancyView(View):
    name, attribute, column = "occupancy", "occupancy_view", "left"
    memo = ("_key",)

    def build(self):
        self._key: tuple | None = None
        hover = "%{x:.1f} s: %{y} %{fullData.name}<extra></extra>"
        traces = [
            lines(
                "blocks in the cache",
                line=dict(color=BLOCKS_COLOR, width=2, shape="hv"),
                fill="tozeroy",
                fillcolor="rgba(37,99,235,0.08)",
                hovertemplate=hover,
            ),
            lines(
                "stored so far",
                line=dict(color=STORED_COLOR, width=1, dash="dot", shape="hv"),
                hovertemplate=hover,
            ),
            lines(
                "removed so far",
                line=dict(color=REMOVED_COLOR, width=1, dash="dot", shape="hv"),
                hovertemplate=hover,
            ),
            markers(
                "KV cache usage % (metric)",
                mode="lines+markers",
                yaxis="y2",
                line=dict(color=USAGE_COLOR, width=1),
                marker=dict(size=4),
                hovertemplate="%{x:.1f} s: %{y:.1f}% of the KV cache in use<extra></extra>",
            ),
        ]
        return self.boxed(
            figure(
                traces,
                title="Cache occupancy",
                width=FIGURE_WIDTH,
                height=300,
                margin=dict(l=50, r=50, t=50, b=40),
                legend=dict(orientation="h", x=0, y=-0.25, font=dict(size=10)),
                xaxis=dict(title="seconds since the watch began", gridcolor="#eee", zeroline=False),
                yaxis=dict(title="blocks", gridcolor="#eee", rangemode="tozero"),
                yaxis2=dict(
                    title="% in use",
                    overlaying="y",
                    side="right",
                    range=[0, 100],
                    tickmode="linear",  # not plotly's default for an overlaying axis, "sync"
                    tick0=0,
                    dtick=25,
                    showgrid=False,
                ),
            ),
            empty=True,
        )

    def draw(self, ctx: DrawContext) -> None:
        source = ctx.cache
        samples = source.metric_samples if source is not None else ()
        key = (id(source), source.version if source else None, len(samples))
        if key == self._key:
            return
        self._key = key
        if source is None:
            with self.figure.batch_update():
                self.fit(True)
                self.figure.layout.title.text = "Cache occupancy: no cache source (widgets.watch)"
            return
        occ = source.occupancy()
        usage = [(ts, m["kv_cache_usage"]) for ts, m in samples if "kv_cache_usage" in m]
        t0 = min([*occ.ts[:1], *(ts for ts, _ in usage[:1])], default=0.0)
        x = occ.ts - t0
        with self.figure.batch_update():
            self.fit(not len(occ.ts) and not usage, keep=("yaxis2",))  # shown with usage only
            blocks, stored, removed, used = self.figure.data
            blocks.x, blocks.y = x, occ.blocks
            stored.x, stored.y = x, occ.stored
            removed.x, removed.y = x, occ.removed
            used.x = np.array([ts - t0 for ts, _ in usage])
            used.y = np.array([100.0 * u for _, u in usage])
            self.figure.layout.yaxis2.visible = bool(usage)
            self.figure.layout.title.text = _title(occ, bool(usage))


def _title(occ, has_usage: bool) -> str:
    if not len(occ.ts):
        return "Cache occupancy: no event batch yet"
    now, stored, removed = (int(a[-1]) for a in (occ.blocks, occ.stored, occ.removed))
    usage = "; orange: the engine's KV cache usage (blocks running requests hold)"
    return (
        f"Cache occupancy: {now:,} blocks in the cache"
        f"<br><sup>stored {stored:,}, removed {removed:,} since the watch began"
        + (usage if has_usage else "")
        + "</sup>"
    )
