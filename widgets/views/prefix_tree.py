"""Prefix-cache explorer: the cached blocks' hash chains as a tree, live.

::

    depth (block index in the chain) ->
    o---o---o---o---+---o---o          o used (ref 1)     o shared (ref > 1, amber) x2: by 2
                    +---o---o  #3      o cached-free (ref 0, green), #k: k-th in the free list,
                    '---o  #0            so #0 is evicted next
    ...o---o   (dotted: its parent was evicted first)

One node per chain hash held by a block (the context's ``prefix_tree``: observe/prefix_tree.py
builds it from a snapshot, or the context's cache source from KV events; its edges are the hash
chain's parent links), x = the block's place in its chain, y = one row per branch end (leaf). A
shared system prompt is the trunk; each question a branch. With more than ``MAX_NODES`` nodes only
the skeleton is drawn (roots, branch points, each branch's first node, leaves): the same lines,
fewer markers. The figure is updated only when the tree's hashes, ref counts or free list changed.
The title's second line says what the labels mean. The figure is as high as its rows: each gets a
band of ``ROW_PX`` (its labels above and below its markers), and half a band below the last keeps
its labels off the x axis's numbers; between ``MIN_HEIGHT`` (one or two rows) and ``MAX_HEIGHT``
(more rows share it). The y axis names its rows only where it has room for the words.

From KV events (a vLLM's) a node's ref count is unknown (None): it is drawn "stored, state
unknown" (slate), with no label, and the legend says why; no block id either. Where the source
gives a block's tokens, the hover shows their text (the context's cache source decodes them).
"""

from __future__ import annotations

from html import escape

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

UNKNOWN_COLOR = "#94a3b8"  # stored, state unknown: KV events carry no ref counts
TEXT_CHARS = 80  # a block's text in its hover, at most
MAX_NODES = 400  # above this, only the skeleton's markers
MAX_LABELS = 120  # above this, no eviction labels next to the cached-free nodes
ROW_PX = 30  # a row per branch end: room for a label above and below its markers
MARGIN = dict(l=40, r=20, t=60, b=40)  # t: the title's two lines; b: the x axis and its title
MIN_HEIGHT = 160  # px: one or two rows
MAX_HEIGHT = 660  # px: from 19 rows on, the rows share it
Y_TITLE = "a row per branch end"
Y_TITLE_ROWS = 3  # the y axis's title (about 110 px of text) needs this many rows beside it
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
EVENTS_LEGEND = (
    "slate: stored, state unknown (KV events carry no ref counts: in use and cached-free look the"
    " same; no block ids) · dotted: its parent block was evicted"
)


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


class PrefixTreeView(View):
    name, attribute = "prefix_tree", "prefix_tree_view"
    memo = ("_key", "_version")

    def build(self):
        self.tree: PrefixTree | None = None  # as last drawn
        self._key: int | None = None
        self._version: tuple | None = None  # the cache source's, as last drawn
        self._text = None  # token ids -> text: the cache source's, when the context has one
        self._block_size = self.setup.block_size
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
                height=MIN_HEIGHT,
                margin=MARGIN,
                showlegend=False,
                xaxis=dict(
                    title=dict(text=f"block in the chain (tokens of {self.setup.block_size})"),
                    dtick=1,
                    showgrid=False,
                    zeroline=False,
                ),
                yaxis=dict(
                    autorange=False,  # a band per row (rows_drawn): the first on top
                    range=[1, -0.5],
                    title=dict(text="", font=dict(size=11)),
                    showticklabels=False,
                    showgrid=False,
                    zeroline=False,
                ),
            ),
            empty=True,
        )

    def draw(self, ctx: DrawContext) -> None:
        snap = ctx.snapshot
        if snap is not None:  # skip the tree when the cache did not change
            key = hash(
                (snap.block_hash.tobytes(), snap.ref_count.tobytes(), snap.free_order.tobytes())
            )
            if key == self._key:
                return
        elif ctx.cache is not None:  # a cache source: unchanged while it applied no batch
            version = (id(ctx.cache), ctx.cache.version)
            if version == self._version:
                return
            self._version = version
        tree = ctx.prefix_tree
        if tree is None:
            return
        if snap is None:  # a cache source's tree: its nodes are the key
            key = hash(tuple((h, n.parent, n.ref_count, n.eviction) for h, n in tree.nodes.items()))
            if key == self._key:
                return
        self._key, self.tree = key, tree
        self._text = ctx.cache.text if ctx.cache is not None else None
        self._block_size = _block_size(ctx) or self.setup.block_size
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
            marks.marker.color = [_color(n) for n in nodes]
            marks.text = [_label(n) if labels else NO_LABEL for n in nodes]
            marks.textposition = [LABEL_PLACES[pos[h][0] % 2] for h in shown]
            marks.hovertext = [self._hover(tree, n) for n in nodes]
            self._fit_rows(tree, 1 + int(max((y for _, y in pos.values()), default=0)))
            self.figure.layout.title.text = self._title(tree, keep, snap is None)
            self.figure.layout.xaxis.title.text = (
                f"block in the chain (tokens of {self._block_size})"
            )

    def _fit_rows(self, tree: PrefixTree, rows: int) -> None:
        """As high as the tree's ``rows`` (see the module docstring), a band of the y axis each."""
        height = MARGIN["t"] + MARGIN["b"] + round(ROW_PX * (rows + 0.5))
        self.fit(not tree.nodes, max(MIN_HEIGHT, min(MAX_HEIGHT, height)))
        y = self.figure.layout.yaxis
        y.range = [rows, -0.5]  # reversed: the first row on top; half a band below the last
        y.title.text = Y_TITLE if rows >= Y_TITLE_ROWS else ""

    def _title(self, tree: PrefixTree, keep: set, from_events: bool) -> str:
        if not tree.nodes and from_events:
            return "Prefix cache: empty (no block stored since the watch began)"
        if not tree.nodes:
            return (
                "Prefix cache: empty (a block is hashed once its "
                f"{self._block_size} tokens are computed)"
            )
        skeleton_note = "" if keep == set(tree.nodes) else " (skeleton)"
        chains = plural(len(tree.roots), "chain")
        if any(n.ref_count is None for n in tree.nodes.values()):
            return (
                f"Prefix cache, from KV events: {plural(len(tree.nodes), 'stored block')}, "
                f"{chains}{skeleton_note}<br><sup>{EVENTS_LEGEND}</sup>"
            )
        cached = sum(n.cached_free for n in tree.nodes.values())
        return (
            f"Prefix cache: {plural(len(tree.nodes), 'hashed block')}, {cached:,} cached-free, "
            f"{chains}{skeleton_note}<br><sup>{LEGEND}</sup>"
        )

    def _hover(self, tree: PrefixTree, n: TreeNode) -> str:
        i = tree.chain_index(n.hash)
        bs = self._block_size
        where = (
            f"block {i} of its chain: tokens {i * bs}..{(i + 1) * bs - 1}"
            if i is not None
            else "an earlier block of its chain was evicted"
        )
        if n.ref_count is None:
            state = "stored: in use or cached-free unknown (the events carry no ref counts)"
            block = f"no block id (the events carry none): {state}"
        else:
            state = (
                f"cached-free, #{n.eviction} in the free list (0: evicted next)"
                if n.cached_free
                else f"in use, ref count {n.ref_count}"
            )
            block = f"physical block {', '.join(map(str, n.blocks))}: {state}"
        lines = [
            f"hash {short_hash(n.hash)}, parent {short_hash(n.parent)}",
            block,
            f"children: {len(tree.children.get(n.hash, []))}; {where}",
        ]
        text = self._text(n.token_ids) if self._text is not None else None
        if text is not None:
            lines.append(f"tokens: {escape(_clip(text))!r}")
        return "<br>".join(lines)


def _block_size(ctx: DrawContext) -> int | None:
    """The block size the cache source has seen (its events say it), if any."""
    model = getattr(ctx.cache, "model", None)
    return getattr(model, "block_size", None)


def _clip(s: str, n: int = TEXT_CHARS) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _state(n: TreeNode) -> int | None:
    if n.ref_count is None:
        return None  # UNKNOWN_COLOR
    if n.cached_free:
        return BLOCK_CACHED
    return BLOCK_SHARED if n.ref_count > 1 else BLOCK_USED


def _color(n: TreeNode) -> str:
    state = _state(n)
    return UNKNOWN_COLOR if state is None else BLOCK_STATE_COLORS[state]


def _label(n: TreeNode) -> str:
    if n.ref_count is None:
        return NO_LABEL
    if n.cached_free:
        return f"#{n.eviction}"
    return f"×{n.ref_count}" if n.ref_count > 1 else NO_LABEL
