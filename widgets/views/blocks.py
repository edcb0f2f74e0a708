"""Block-table occupancy: every KV block a cell of a grid, coloured by state.

::

    block id = row * ncols + col        (row 0 at the top)

    +----+----+----+------+
    | 0  | 1  | 2  | 3+2  |   z = BLOCK_* code (free / used / cached / shared)
    +----+----+----+------+   text = its owner's seq id ("3+2": seq 3 and two more share it)
    | 4  | 5  | .. |      |   hover = owners, ref count, tokens, its place in a hash chain

Trace 0 is the grid (a heatmap with a discrete colour scale), trace 1 the integrity overlay (red
open squares on the blocks a violation names), trace 2 the picked request's blocks (outlined
while they are its blocks now). It draws from the context's snapshot alone: a block's place in its
chain is found through the snapshot's parent hashes. Above ``MAX_CELLS`` blocks a cell stands for
``per_cell`` consecutive blocks (model/cells.py): coloured by the state most of them are in, its
hover counts them; block ids above become cell ids. A click on a cell asks to pick one of its
blocks' owners.
"""

from __future__ import annotations

import math
import re

import numpy as np

from nanovllm.engine.observe.snapshot import BLOCK_STATE_COLORS, BLOCK_STATE_NAMES, EngineSnapshot

from ..model.cells import MAX_CELLS, blocks_per_cell, cell_counts, cell_hover, dominant
from .base import DrawContext, View, ViewSetup
from .figures import FIGURE_WIDTH, figure, json_grid, markers, state_heatmap

MAX_HOVER_BLOCKS = 4096  # above this, cells carry no per-block text (it would dominate the message)
MAX_LABEL_BLOCKS = 256  # above this, cells are too small to print owner ids in
LABELLED_COLUMNS = 16  # at most, while cells carry labels: 34 px wide, room for "12+3" at 9 px


def grid_columns(num_blocks: int) -> int:
    """A power of two near sqrt(2n): grids about twice as wide as tall (64 -> 16, 512 -> 32), and
    no more than LABELLED_COLUMNS while the cells carry owner labels (256 -> 16 x 16, not 32 x 8
    cells of 17 px where a shared block's label spilled over its neighbours)."""
    columns = max(4, 2 ** math.ceil(math.log2(math.sqrt(2 * max(num_blocks, 1)))))
    return min(columns, LABELLED_COLUMNS) if num_blocks <= MAX_LABEL_BLOCKS else columns


_BLOCK_RE = re.compile(r"\bblocks? (\d+)")
_BLOCK_LIST_RE = re.compile(r"\bblocks? \[([\d, ]*)\]|: \[([\d, ]*)\]")


def blocks_named(problem: str) -> set[int]:
    """The block ids a ``check_integrity()`` message names ("block 5 has ...", "holds blocks
    [1, 2]")."""
    ids = {int(m) for m in _BLOCK_RE.findall(problem)}
    for a, b in _BLOCK_LIST_RE.findall(problem):
        ids |= {int(x) for x in (a or b).replace(",", " ").split()}
    return ids


def owner_label(owners: tuple[int, ...]) -> str:
    """A cell's text: its owner, or the first and how many more ("3+2"), short enough to fit."""
    if not owners:
        return ""
    return str(owners[0]) + (f"+{len(owners) - 1}" if len(owners) > 1 else "")


class BlockView(View):
    name, attribute, column = "blocks", "block_view", "left"

    def __init__(self, setup: ViewSetup):
        n = setup.num_blocks
        self.num_blocks, self.block_size = n, setup.block_size
        self.per_cell = blocks_per_cell(n, MAX_CELLS)  # blocks per cell: 1 when small
        self.num_cells = math.ceil(n / self.per_cell)
        self.ncols = grid_columns(self.num_cells)
        self.nrows = math.ceil(self.num_cells / self.ncols)
        self.problems: tuple[str, ...] = ()  # the integrity violations last drawn
        super().__init__(setup)

    def build(self):
        per = "" if self.per_cell == 1 else f" x {self.per_cell} (a cell: {self.per_cell} blocks)"
        rows = list(range(0, self.nrows, max(1, self.nrows // 16)))
        grid = state_heatmap(
            "blocks",
            BLOCK_STATE_COLORS,
            BLOCK_STATE_NAMES,
            z=json_grid(self._pad(np.zeros(self.num_cells))),
            hovertemplate="%{hovertext}<extra></extra>",
            texttemplate="%{text}",
            textfont=dict(size=9),
        )
        cell = self.cell_px()  # the squares frame a cell's label, not cross it
        overlay = markers(
            "integrity",
            hovertemplate="%{text}<extra></extra>",
            marker=dict(symbol="square-open", size=cell, color="red", line=dict(width=3)),
        )
        picked = markers(
            "picked",
            hoverinfo="skip",
            marker=dict(symbol="square-open", size=cell - 5, color="#111827", line=dict(width=2)),
        )
        axis = dict(showgrid=False, zeroline=False)
        return self.boxed(
            figure(
                [grid, overlay, picked],
                title="KV cache blocks",
                height=self.height(),
                margin=dict(l=40, r=10, t=40, b=40),
                showlegend=False,
                xaxis=dict(
                    range=[-0.5, self.ncols - 0.5],
                    title=dict(text=f"block id = row label + column{per}", font=dict(size=11)),
                    **axis,
                ),
                yaxis=dict(
                    autorange="reversed",
                    tickvals=rows,
                    ticktext=[str(r * self.ncols * self.per_cell) for r in rows],  # first block id
                    **axis,
                ),
            )
        )

    def height(self) -> int:
        return min(560, 130 + 26 * self.nrows)

    def cell_px(self) -> int:
        """About how many pixels a cell is, its smaller side: the plot is the figure less its
        margins (80 px of height) and the colorbar with its names (about 130 px of width)."""
        side = min((FIGURE_WIDTH - 130) / self.ncols, (self.height() - 80) / self.nrows)
        return max(8, round(side))

    def wire(self) -> None:
        self.figure.data[0].on_click(self._on_cell)

    def _on_cell(self, trace, points, state) -> None:
        if points.xs:  # a cell of a large cache stands for per_cell blocks
            first = (int(points.ys[0]) * self.ncols + int(points.xs[0])) * self.per_cell
            self.emit("blocks", *range(first, min(first + self.per_cell, self.num_blocks)))

    def _pad(self, values, fill=np.nan, dtype=float) -> np.ndarray:
        """Flat per-cell values -> an [nrows, ncols] array (cells past the last one get ``fill``).
        Arrays, not nested lists: plotly validates and sends them without a per-cell pass."""
        cells = np.full(self.nrows * self.ncols, fill, dtype=dtype)
        cells[: self.num_cells] = values
        return cells.reshape(self.nrows, self.ncols)

    def position(self, block_id: int) -> tuple[int, int]:
        """(x, y) = (column, row) of a block's cell."""
        cell = block_id // self.per_cell
        return cell % self.ncols, cell // self.ncols

    # ---- drawing --------------------------------------------------------------------------------
    def draw(self, ctx: DrawContext) -> None:
        snap = ctx.snapshot
        if snap is None:
            if ctx.step is not None:
                self.figure.layout.title.text = (
                    f"KV cache blocks: no snapshot kept for step {ctx.step}"
                )
            return
        if snap.num_blocks != self.num_blocks:
            raise ValueError(
                f"the snapshot has {snap.num_blocks} blocks, this grid {self.num_blocks}: the "
                "engine's cache changed size; rebuild the workbench"
            )
        self.problems = tuple(snap.problems)
        with self.figure.batch_update():
            self._draw_cells(snap)
            self._draw_overlay(snap)
            self.figure.layout.title.text = _title(ctx.step, snap)
        picked = ctx.picked
        self._outline(list(picked.entries) if picked.current else [], picked.seq_id)

    def _draw_cells(self, snap: EngineSnapshot) -> None:
        if self.per_cell > 1:
            counts = cell_counts(snap.block_state, self.per_cell, len(BLOCK_STATE_NAMES))
            z = dominant(counts)
            hover = cell_hover(counts, self.per_cell, self.num_blocks, BLOCK_STATE_NAMES)
        else:
            z = snap.block_state
            hover = _hover(snap) if self.num_blocks <= MAX_HOVER_BLOCKS else None
        labels = (
            [owner_label(snap.owners.get(b, ())) for b in range(self.num_blocks)]
            if self.num_blocks <= MAX_LABEL_BLOCKS
            else None
        )
        cells = self.figure.data[0]
        cells.z = json_grid(self._pad(z))
        cells.hovertext = self._pad(hover, "", object) if hover is not None else None
        cells.text = self._pad(labels, "", object) if labels is not None else None

    def _draw_overlay(self, snap: EngineSnapshot) -> None:
        bad = sorted(
            {b for p in snap.problems for b in blocks_named(p) if 0 <= b < self.num_blocks}
        )
        overlay = self.figure.data[1]
        overlay.x = [self.position(b)[0] for b in bad]
        overlay.y = [self.position(b)[1] for b in bad]
        overlay.text = ["<br>".join(p for p in snap.problems if b in blocks_named(p)) for b in bad]

    def _outline(self, entries, seq_id: int | None) -> None:
        """Outline the picked request's blocks ([] clears the outline)."""
        trace = self.figure.data[2]
        xs = [self.position(e.physical)[0] for e in entries]
        ys = [self.position(e.physical)[1] for e in entries]
        label = f"seq {seq_id}" if seq_id is not None else "picked"
        if list(trace.x or ()) != xs or list(trace.y or ()) != ys or trace.name != label:
            with self.figure.batch_update():
                trace.x, trace.y, trace.name = xs, ys, label


def _title(step: int | None, snap: EngineSnapshot) -> str:
    when = "now" if step is None else f"after step {step}"
    if step is not None and snap.step != step + 1:
        when += f" (nearest snapshot: after step {snap.step - 1})"
    return f"KV cache blocks {when}"


def _hover(snap: EngineSnapshot) -> list[str]:
    """A hover per block: state, ref count, owners, tokens and its place in its hash chain (its
    parent is the block holding its parent hash, in this snapshot)."""
    holder = {int(snap.block_hash[b]): b for b in np.flatnonzero(snap.has_hash).tolist()}
    out = []
    for b in range(snap.num_blocks):
        state = BLOCK_STATE_NAMES[snap.block_state[b]]
        lines = [f"block {b}: <b>{state}</b>", f"ref count {int(snap.ref_count[b])}"]
        owners = snap.owners.get(b)
        if owners:
            lines.append("owners: seq " + ", ".join(map(str, owners)))
        if b in snap.token_range:
            first, end = snap.token_range[b]
            lines.append(f"tokens {first}..{end - 1} ({end - first}/{snap.block_size})")
        if snap.has_hash[b]:
            lines.append("holds a prefix hash, " + _chain(snap, b, holder))
        out.append("<br>".join(lines))
    return out


def _chain(snap: EngineSnapshot, b: int, holder: dict[int, int]) -> str:
    if snap.has_parent is None or not snap.has_parent[b]:
        return "first in its chain"
    parent = holder.get(int(snap.parent_hash[b]))
    return "its parent block was evicted" if parent is None else f"chained after block {parent}"
