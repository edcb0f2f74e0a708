"""Prefix-cache explorer: the cached blocks' hash chains as a tree, live.

::

    depth (block index in the chain) ->
    o---o---o---o---+---o---o          o used (ref 1)     o shared (ref > 1, amber)
                    +---o---o  #3      o cached-free (ref 0, green), #k: k-th in the free list,
                    '---o  #0            so #0 is evicted next
    ...o---o   (dashed: its parent was evicted first)

One node per chain hash held by a block (``prefix_tree.py`` builds the tree from the snapshot;
its edges are the hash chain's parent links), x = the block's place in its chain, y = one row per
leaf. A shared system prompt is the trunk; each question a branch. With more than ``MAX_NODES``
nodes only the skeleton is drawn (roots, branch points, each branch's first node, leaves): the
same lines, fewer markers. The figure is updated only when the cache's hashes, ref counts or
free list changed.
"""

from __future__ import annotations

import plotly.graph_objects as go

from nanovllm.engine.observe.block_table import short_hash
from nanovllm.engine.observe.prefix_tree import (
    PrefixTree,
    TreeNode,
    layout,
    nearest_kept_ancestor,
    prefix_tree,
    skeleton,
)
from nanovllm.engine.observe.snapshot import (
    BLOCK_CACHED,
    BLOCK_SHARED,
    BLOCK_STATE_COLORS,
    BLOCK_USED,
    EngineSnapshot,
)

from ._layout import WIDE_FIGURE_WIDTH

MAX_NODES = 400  # above this, only the skeleton's markers
MAX_LABELS = 120  # above this, no eviction labels next to the cached-free nodes


class PrefixTreeView:
    def __init__(self, block_size: int):
        self.block_size = block_size
        self.tree: PrefixTree | None = None  # as last drawn
        self._key: int | None = None
        self.figure = go.FigureWidget(
            data=[
                go.Scatter(
                    x=[],
                    y=[],
                    mode="lines",
                    line=dict(color="#9ca3af", width=1.5),
                    hoverinfo="skip",
                    name="hash chain",
                ),
                go.Scatter(
                    x=[],
                    y=[],
                    mode="lines",
                    line=dict(color="#9ca3af", width=1, dash="dot"),
                    hoverinfo="skip",
                    name="parent evicted",
                ),
                go.Scatter(
                    x=[],
                    y=[],
                    mode="markers+text",
                    textposition="middle right",
                    textfont=dict(size=9, color="#047857"),
                    name="blocks",
                    hovertemplate="%{hovertext}<extra></extra>",
                    marker=dict(size=11, line=dict(width=1, color="#374151")),
                ),
            ],
            layout=go.Layout(
                title=dict(text="Prefix cache", font=dict(size=13), x=0.01, xanchor="left"),
                width=WIDE_FIGURE_WIDTH,
                height=240,
                margin=dict(l=40, r=20, t=40, b=40),
                plot_bgcolor="white",
                showlegend=False,
                xaxis=dict(
                    title=dict(text=f"block in the chain (tokens of {block_size})"),
                    dtick=1,
                    showgrid=False,
                    zeroline=False,
                ),
                yaxis=dict(autorange="reversed", visible=False),
            ),
        )

    def draw(self, snap: EngineSnapshot | None, title: str | None = None) -> None:
        if snap is None or snap.block_hash is None:
            return
        key = hash((snap.block_hash.tobytes(), snap.ref_count.tobytes(), snap.free_order.tobytes()))
        if key == self._key:
            return
        self._key = key
        self.tree = tree = prefix_tree(snap)
        pos = layout(tree)
        keep = skeleton(tree) if len(tree.nodes) > MAX_NODES else set(tree.nodes)
        shown = sorted(keep, key=lambda h: pos[h])
        ex, ey, ox, oy = [], [], [], []
        for h in shown:
            x, y = pos[h]
            up = nearest_kept_ancestor(tree, h, keep)
            if up is not None:
                ex += [pos[up][0], x, None]
                ey += [pos[up][1], y, None]
            elif tree.nodes[h].parent is not None:  # an orphan: its parent was evicted
                ox += [x - 0.6, x, None]
                oy += [y, y, None]
        labels = len(shown) <= MAX_LABELS
        nodes = [tree.nodes[h] for h in shown]
        cached = sum(n.cached_free for n in tree.nodes.values())
        with self.figure.batch_update():
            edges, orphans, marks = self.figure.data
            edges.x, edges.y = ex, ey
            orphans.x, orphans.y = ox, oy
            marks.x = [pos[h][0] for h in shown]
            marks.y = [pos[h][1] for h in shown]
            marks.marker.color = [BLOCK_STATE_COLORS[_state(n)] for n in nodes]
            marks.text = [_label(n) if labels else "" for n in nodes]
            marks.hovertext = [self._hover(tree, n) for n in nodes]
            self.figure.layout.xaxis.visible = bool(tree.nodes)  # no empty axis
            rows = 1 + max((y for _, y in pos.values()), default=0)
            self.figure.layout.height = max(240, min(640, 90 + 16 * rows))
            self.figure.layout.title.text = title or (
                f"Prefix cache: {len(tree.nodes)} hashed blocks, {cached} cached-free, "
                f"{len(tree.roots)} chains" + ("" if keep == set(tree.nodes) else " (skeleton)")
                if tree.nodes
                else f"Prefix cache: empty (a block is hashed once its {self.block_size} tokens "
                "are computed)"
            )

    def _hover(self, tree: PrefixTree, n: TreeNode) -> str:
        i = tree.chain_index(n.hash)
        bs = self.block_size
        where = (
            f"block {i} of its chain: tokens {i * bs}..{(i + 1) * bs - 1}"
            if i is not None
            else "an earlier block of its chain was evicted"
        )
        state = (
            f"cached-free, #{n.eviction} in the free list (0: evicted next)"
            if n.cached_free
            else f"in use, ref count {n.ref_count}"
        )
        return "<br>".join(
            [
                f"hash {short_hash(n.hash)}, parent {short_hash(n.parent)}",
                f"physical block {', '.join(map(str, n.blocks))}: {state}",
                f"children: {len(tree.children.get(n.hash, []))}; {where}",
            ]
        )


def _state(n: TreeNode) -> int:
    if n.cached_free:
        return BLOCK_CACHED
    return BLOCK_SHARED if n.ref_count > 1 else BLOCK_USED


def _label(n: TreeNode) -> str:
    if n.cached_free:
        return f"#{n.eviction}"
    return f"×{n.ref_count}" if n.ref_count > 1 else ""
