"""Eviction stream: the blocks the prefix cache gave up, from its KV events (``BlockRemoved``).

::

    place in   2 | o  o  o  o                   a marker per removed block, in the order they
    its chain  1 |             o        o       went (x: the n-th eviction), at its place in its
               0 |                o  o          chain (y; 0: a first block; -1: an earlier block
              -1 |                         o    of its chain went first); colour: how long it
                   1  2  3  4  5  6  7  8  9    stayed in the cache
    newest first:  12:03:04  block 2 of its chain, stayed 4.1 s  "five six seven eight ..."

Drawn from the context's cache source (``evictions(n)``: the last ``MAX_SHOWN``, newest last),
with the newest few as text under the figure. An LRU cache gives up a finished request's tail
first (high places in the chain) and a shared trunk last. A reset (``AllBlocksCleared``) is no
eviction: the title counts it apart. Redrawn only when the source applied a batch.
"""

from __future__ import annotations

import time
from html import escape

import ipywidgets as W
import numpy as np

from nanovllm.engine.observe.block_table import short_hash

from .base import DrawContext, View
from .figures import WIDE_FIGURE_WIDTH, figure, markers

MAX_SHOWN = 200  # evictions drawn (the newest)
NEWEST = 6  # listed as text under the figure
TEXT_CHARS = 70
BROKEN = -1  # the y of a block whose chain had lost an earlier block already


class EvictionView(View):
    name, attribute, column = "evictions", "eviction_view", "wide"
    memo = ("_key",)

    def build(self):
        self._key: tuple | None = None
        self.shown: list = []  # the Evictions drawn, newest last (for notebooks and tests)
        self.newest = W.HTML(value="")
        scatter = markers(
            "evicted blocks",
            hovertemplate="%{hovertext}<extra></extra>",
            marker=dict(
                size=10,
                colorscale="Viridis",
                cmin=0,
                line=dict(width=1, color="#374151"),
                colorbar=dict(title=dict(text="stayed (s)", side="right"), thickness=12, len=0.9),
            ),
        )
        box = self.boxed(
            figure(
                [scatter],
                title="Evictions",
                width=WIDE_FIGURE_WIDTH,
                height=240,
                margin=dict(l=50, r=20, t=50, b=40),
                xaxis=dict(title="the n-th block evicted", gridcolor="#eee", zeroline=False),
                yaxis=dict(title="place in its chain", gridcolor="#eee", zeroline=False, dtick=1),
            ),
            empty=True,
        )
        return W.VBox([box, self.newest])

    def draw(self, ctx: DrawContext) -> None:
        source = ctx.cache
        key = (id(source), source.version if source is not None else None)
        if key == self._key:
            return
        self._key = key
        if source is None:
            with self.figure.batch_update():
                self.fit(True)
                self.figure.layout.title.text = "Evictions: no cache source (widgets.watch)"
            return
        shown = source.evictions(MAX_SHOWN)
        first = source.model.evicted - len(shown) + 1  # the number of the first one shown
        text = source.text
        self.shown = shown
        with self.figure.batch_update():
            (scatter,) = self.figure.data
            scatter.x = np.arange(first, first + len(shown))
            scatter.y = np.array([_place(e) for e in shown])
            scatter.marker.color = np.array([e.lifetime for e in shown])
            scatter.hovertext = [_hover(e, text(e.token_ids)) for e in shown]
            self.figure.layout.title.text = _title(source.model, len(shown))
            self.fit(not shown)
        self.newest.value = _newest(shown[::-1][:NEWEST], text)


def _title(model, shown: int) -> str:
    if not model.evicted and not model.clears:
        return "Evictions: none yet (a block leaves when its memory is needed, or on a reset)"
    resets = f"; {model.clears} reset(s) cleared the whole cache" if model.clears else ""
    drawn = f" (the last {shown} drawn)" if shown < model.evicted else ""
    return (
        f"Evictions: {model.evicted:,} blocks removed{drawn}{resets}"
        f"<br><sup>y: the block's place in its chain ({BROKEN}: an earlier block had gone "
        "first) · colour: how long it stayed cached · an LRU cache frees the tails first</sup>"
    )


def _place(e) -> int:
    return BROKEN if e.chain_index is None else e.chain_index


def _where(e) -> str:
    if e.chain_index is None:
        return "an earlier block of its chain went first"
    return f"block {e.chain_index} of its chain"


def _hover(e, text: str | None) -> str:
    lines = [
        f"{_clock(e.ts)}: {_where(e)}, stayed {e.lifetime:.1f} s",
        f"hash {short_hash(e.hash)}, parent {short_hash(e.parent)}",
    ]
    if text is not None:
        lines.append(f"tokens: {escape(_clip(text))!r}")
    return "<br>".join(lines)


def _newest(shown: list, text) -> str:
    if not shown:
        return ""
    rows = "".join(
        "<tr>"
        f"<td style='padding:0 8px'>{_clock(e.ts)}</td>"
        f"<td style='padding:0 8px'>{escape(_where(e))}, stayed {e.lifetime:.1f} s</td>"
        f"<td style='padding:0 8px'><code>{escape(_clip(text(e.token_ids) or '?'))}</code></td>"
        "</tr>"
        for e in shown
    )
    return (
        "<div style='font-size:12px'><b>newest evictions first</b>"
        f"<table style='border-collapse:collapse'>{rows}</table></div>"
    )


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def _clip(s: str, n: int = TEXT_CHARS) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
