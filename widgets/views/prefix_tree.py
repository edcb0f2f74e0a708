"""Prefix-cache explorer: the cached blocks' hash chains as a tree, live.

::

    depth (block index in the chain) ->
    o---o---o---o---+---o---o          o used (ref 1)     o shared (ref > 1, amber) x2: by 2
                    +---o---o  #3      o cached-free (ref 0, green), #k: k-th in the free list,
                    '---o  #0            so #0 is evicted next
    ...o---o   (dotted: its parent was evicted first)

One node per chain hash held by a block (the context's ``prefix_tree``: observe/prefix_tree.py
builds it from a snapshot, and another source can hand one over; its edges are the hash chain's
parent links), x = the block's place in its chain, y = one row per branch end (leaf). A shared
system prompt is the trunk; each question a branch. With more than ``MAX_NODES`` nodes only the
skeleton is drawn (roots, branch points, each branch's first node, leaves): the same lines, fewer
markers. The figure is updated only when the cache's hashes, ref counts or
free list changed. The title's second line says what the labels mean.
"""

from __future__ import annotations

from nanovllm.engine.observe.block_table import short_hash
from nanovllm.engine.observe.prefix_tree import (
    PrefixTree,
    TreeNode,
    layout,
    nearest_kept_ancestor,
    skeleton,
)
from nanovllm.engine.observe.snapshot import (
    BLOCK_CACHED,
    BLOCK_SHARED,
    BLOCK_STATE_COLORS,
    BLOCK_USED,
)

from .base import DrawContext, View
from .figures import WIDE_FIGURE_WIDTH, figure, lines, markers

MAX_NODES = 400  # above this, only the skeleton's markers
MAX_LABELS = 120  # above this, no eviction labels next to the cached-free nodes
ROW_PX = 30  # a row per branch end: room for a label above and below its markers
# A label sits above its node in even columns and below it in odd ones: "#255" is wider than a
# column when a chain is long, and side by side the labels of a chain ran into each other.
LABEL_PLACES = ("top center", "bottom center")
# No label is a space, not "": plotly.js removes the text element of a point whose text is empty
# and never makes it again, so a node unlabelled once stayed unlabelled when it got a "#k".
NO_LABEL = " "
LEGEND = (
    "#k: cached-free, k-th in line to be evicted (#0 next) · ×n: n requests share the block"
    " · dotted: its parent block was evicted"
)


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


class PrefixTreeView(View):
    name, attribute = "prefix_tree", "prefix_tree_view"

    def build(self):
        self.tree: PrefixTree | None = None  # as last drawn
        self._key: int | None = None
        traces = [
            lines("hash chain", line=dict(color="#9ca3af", width=1.5), hoverinfo="skip"),
            lines(
                "parent evicted", line=dict(color="#9ca3af", width=1, dash="dot"), hoverinfo="skip"
            ),
            markers(
                "blocks",
                mode="markers+text",
                textposition=LABEL_PLACES[0],
                cliponaxis=False,  # the first row's labels above it, in the margin
                textfont=dict(size=11, color="#047857"),
                hovertemplate="%{hovertext}<extra></extra>",
                marker=dict(size=11, line=dict(width=1, color="#374151")),
            ),
        ]
        return self.boxed(
            figure(
                traces,
                title="Prefix cache",
                width=WIDE_FIGURE_WIDTH,
                height=260,
                margin=dict(l=40, r=20, t=60, b=40),
                showlegend=False,
                xaxis=dict(
                    title=dict(text=f"block in the chain (tokens of {self.setup.block_size})"),
                    dtick=1,
                    showgrid=False,
                    zeroline=False,
                ),
                yaxis=dict(
                    autorange="reversed",
                    title=dict(text="a row per branch end", font=dict(size=11)),
                    showticklabels=False,
                    showgrid=False,
                    zeroline=False,
                ),
            )
        )

    def draw(self, ctx: DrawContext) -> None:
        snap = ctx.snapshot
        if snap is not None:  # skip the tree when the cache did not change
            key = hash(
                (snap.block_hash.tobytes(), snap.ref_count.tobytes(), snap.free_order.tobytes())
            )
            if key == self._key:
                return
            self._key = key
        tree = ctx.prefix_tree
        if tree is None:
            return
        self.tree = tree
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
        with self.figure.batch_update():
            edges, orphans, marks = self.figure.data
            edges.x, edges.y = ex, ey
            orphans.x, orphans.y = ox, oy
            marks.x = [pos[h][0] for h in shown]
            marks.y = [pos[h][1] for h in shown]
            marks.marker.color = [BLOCK_STATE_COLORS[_state(n)] for n in nodes]
            marks.text = [_label(n) if labels else NO_LABEL for n in nodes]
            marks.textposition = [LABEL_PLACES[pos[h][0] % 2] for h in shown]
            marks.hovertext = [self._hover(tree, n) for n in nodes]
            self.figure.layout.xaxis.visible = bool(tree.nodes)  # no empty axis
            self.figure.layout.yaxis.visible = bool(tree.nodes)
            rows = 1 + max((y for _, y in pos.values()), default=0)
            self.figure.layout.height = max(260, min(660, 110 + ROW_PX * rows))
            self.figure.layout.title.text = self._title(tree, keep)

    def _title(self, tree: PrefixTree, keep: set) -> str:
        if not tree.nodes:
            return (
                "Prefix cache: empty (a block is hashed once its "
                f"{self.setup.block_size} tokens are computed)"
            )
        cached = sum(n.cached_free for n in tree.nodes.values())
        return (
            f"Prefix cache: {plural(len(tree.nodes), 'hashed block')}, {cached:,} cached-free, "
            f"{plural(len(tree.roots), 'chain')}"
            + ("" if keep == set(tree.nodes) else " (skeleton)")
            + f"<br><sup>{LEGEND}</sup>"
        )

    def _hover(self, tree: PrefixTree, n: TreeNode) -> str:
        i = tree.chain_index(n.hash)
        bs = self.setup.block_size
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
    return f"×{n.ref_count}" if n.ref_count > 1 else NO_LABEL
