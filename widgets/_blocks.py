"""Block-table occupancy: every KV block a cell of a grid, coloured by state.

::

    block id = row * ncols + col        (row 0 at the top)

    +----+----+----+----+
    | 0  | 1  | 2  | 3  |   z = BLOCK_* code (free / used / cached / shared)
    +----+----+----+----+   text = owner seq ids; hover = owners, ref count, tokens, hash chain
    | 4  | 5  | .. |    |

One ``go.FigureWidget``: trace 0 is the grid (a Heatmap with a discrete colour scale), trace 1 the
integrity overlay (red open squares on the blocks a violation names), trace 2 the picked request's
blocks (``highlight``; see _block_table.py). ``draw(snapshot)`` mutates them inside one
``batch_update()``; it reads only the ``EngineSnapshot``. Above ``MAX_CELLS`` blocks a cell
stands for ``per_cell`` consecutive blocks (see _cells.py): coloured by the state most of them
are in, its hover counts them; block ids above become cell ids.
"""

from __future__ import annotations

import math
import re

import numpy as np
import plotly.graph_objects as go

from nanovllm.engine.observe.snapshot import BLOCK_STATE_COLORS, BLOCK_STATE_NAMES, EngineSnapshot

from ._cells import MAX_CELLS, blocks_per_cell, cell_counts, cell_hover, dominant
from ._json import grid
from ._layout import FIGURE_WIDTH

MAX_HOVER_BLOCKS = 4096  # above this, cells carry no per-block text (it would dominate the message)
MAX_LABEL_BLOCKS = 256  # above this, cells are too small to print owner ids in


def discrete_colorscale(colors: tuple[str, ...]) -> list[list]:
    """Plotly colour scale mapping integer z = 0..n-1 (with zmin=-0.5, zmax=n-0.5) to colors[z]."""
    n, scale = len(colors), []
    for i, c in enumerate(colors):
        scale += [[i / n, c], [(i + 1) / n, c]]
    return scale


def grid_columns(num_blocks: int) -> int:
    """A power of two near sqrt(2n): grids about twice as wide as tall (64 -> 16, 512 -> 32)."""
    return max(4, 2 ** math.ceil(math.log2(math.sqrt(2 * max(num_blocks, 1)))))


_BLOCK_RE = re.compile(r"\bblocks? (\d+)")
_BLOCK_LIST_RE = re.compile(r"\bblocks? \[([\d, ]*)\]|: \[([\d, ]*)\]")


def blocks_named(problem: str) -> set[int]:
    """The block ids a ``check_integrity()`` message names ("block 5 has ...", "holds blocks
    [1, 2]")."""
    ids = {int(m) for m in _BLOCK_RE.findall(problem)}
    for a, b in _BLOCK_LIST_RE.findall(problem):
        ids |= {int(x) for x in (a or b).replace(",", " ").split()}
    return ids


class BlockView:
    """The KV-cache grid. ``figure`` is the FigureWidget; ``draw(snap)`` updates it in place."""

    def __init__(self, num_blocks: int, block_size: int, height: int | None = None):
        self.num_blocks, self.block_size = num_blocks, block_size
        self.per_cell = blocks_per_cell(num_blocks, MAX_CELLS)  # blocks per cell: 1 when small
        self.num_cells = math.ceil(num_blocks / self.per_cell)
        self.ncols = grid_columns(self.num_cells)
        self.nrows = math.ceil(self.num_cells / self.ncols)
        per = "" if self.per_cell == 1 else f" x {self.per_cell} (a cell: {self.per_cell} blocks)"
        # block -> the block before it in the last sequence seen holding it (None: it was a first
        # block). Cached-free blocks keep their entry. Knowledge of the cache, not of a step: it
        # outlives reset() (the cache does) and is forgotten when the engine is rebuilt.
        self.prev_block: dict[int, int | None] = {}
        self.problems: tuple[str, ...] = ()
        self.figure = go.FigureWidget(
            data=[self._grid_trace(), self._overlay_trace(), self._highlight_trace()],
            layout=go.Layout(
                title=dict(text="KV cache blocks", font=dict(size=13), x=0.01, xanchor="left"),
                width=FIGURE_WIDTH,
                height=height or min(560, 130 + 26 * self.nrows),
                margin=dict(l=40, r=10, t=40, b=40),
                xaxis=dict(
                    showgrid=False,
                    zeroline=False,
                    range=[-0.5, self.ncols - 0.5],
                    title=dict(text=f"block id = row label + column{per}", font=dict(size=11)),
                ),
                yaxis=dict(
                    showgrid=False,
                    zeroline=False,
                    autorange="reversed",
                    title=None,
                    tickvals=(rows := list(range(0, self.nrows, max(1, self.nrows // 16)))),
                    ticktext=[str(r * self.ncols * self.per_cell) for r in rows],
                ),  # a row's first block id
                plot_bgcolor="white",
                showlegend=False,
            ),
        )

    def _grid_trace(self) -> go.Heatmap:
        n = len(BLOCK_STATE_COLORS)
        return go.Heatmap(
            z=grid(self._pad(np.zeros(self.num_cells))),
            zmin=-0.5,
            zmax=n - 0.5,
            colorscale=discrete_colorscale(BLOCK_STATE_COLORS),
            xgap=1,
            ygap=1,
            hoverongaps=False,
            colorbar=dict(
                tickvals=list(range(n)), ticktext=list(BLOCK_STATE_NAMES), thickness=12, len=0.9
            ),
            hovertemplate="%{hovertext}<extra></extra>",
            texttemplate="%{text}",
            textfont=dict(size=9),
            name="blocks",
        )

    def _overlay_trace(self) -> go.Scatter:
        return go.Scatter(
            x=[],
            y=[],
            mode="markers",
            name="integrity",
            hovertemplate="%{text}<extra></extra>",
            marker=dict(
                symbol="square-open", size=18, color="red", line=dict(width=3, color="red")
            ),
        )

    def _highlight_trace(self) -> go.Scatter:
        return go.Scatter(
            x=[],
            y=[],
            mode="markers",
            name="picked",
            hoverinfo="skip",
            marker=dict(symbol="square-open", size=14, color="#111827", line=dict(width=2)),
        )

    def highlight(self, block_ids: list[int], label: str = "") -> None:
        """Outline these blocks (the picked request's block table); [] clears the outline."""
        trace = self.figure.data[2]
        xs = [self.position(b)[0] for b in block_ids]
        ys = [self.position(b)[1] for b in block_ids]
        if list(trace.x or ()) != xs or list(trace.y or ()) != ys or trace.name != label:
            with self.figure.batch_update():
                trace.x, trace.y, trace.name = xs, ys, label or "picked"

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
    def draw(self, snap: EngineSnapshot, title: str | None = None) -> None:
        assert snap.num_blocks == self.num_blocks, (
            "the engine's cache size changed; rebuild the view"
        )
        self.learn(snap)
        self.problems = tuple(snap.problems)
        if self.per_cell > 1:
            counts = cell_counts(snap.block_state, self.per_cell, len(BLOCK_STATE_NAMES))
            z = dominant(counts)
            hover = cell_hover(counts, self.per_cell, self.num_blocks, BLOCK_STATE_NAMES)
        else:
            z = snap.block_state
            hover = self._hover(snap) if self.num_blocks <= MAX_HOVER_BLOCKS else None
        labels = self._labels(snap) if self.num_blocks <= MAX_LABEL_BLOCKS else None
        bad = sorted(
            {b for p in snap.problems for b in blocks_named(p) if 0 <= b < self.num_blocks}
        )
        why = ["<br>".join(p for p in snap.problems if b in blocks_named(p)) for b in bad]
        with self.figure.batch_update():
            cells, overlay = self.figure.data[:2]
            cells.z = grid(self._pad(z))
            cells.hovertext = self._pad(hover, "", object) if hover is not None else None
            cells.text = self._pad(labels, "", object) if labels is not None else None
            overlay.x = [self.position(b)[0] for b in bad]
            overlay.y = [self.position(b)[1] for b in bad]
            overlay.text = why
            if title is not None:
                self.figure.layout.title.text = title

    def learn(self, snap: EngineSnapshot) -> None:
        """Remember which block follows which in the sequences' block tables (for the hover)."""
        for seq in snap.sequences:
            if seq.block_table:
                self.prev_block[seq.block_table[0]] = None  # a chain starts here
            for prev, block in zip(seq.block_table, seq.block_table[1:], strict=False):
                self.prev_block[block] = prev

    def _labels(self, snap: EngineSnapshot) -> list[str]:
        return [",".join(map(str, snap.owners.get(b, ()))) for b in range(self.num_blocks)]

    def _hover(self, snap: EngineSnapshot) -> list[str]:
        out = []
        for b in range(self.num_blocks):
            state = BLOCK_STATE_NAMES[snap.block_state[b]]
            lines = [f"block {b}: <b>{state}</b>", f"ref count {int(snap.ref_count[b])}"]
            owners = snap.owners.get(b)
            if owners:
                lines.append("owners: seq " + ", ".join(map(str, owners)))
            if b in snap.token_range:
                first, end = snap.token_range[b]
                lines.append(f"tokens {first}..{end - 1} ({end - first}/{self.block_size})")
            if snap.has_hash[b]:
                lines.append("holds a prefix hash, " + self._chain(b))
            out.append("<br>".join(lines))
        return out

    def _chain(self, b: int) -> str:
        if b not in self.prev_block:
            return "predecessor not seen"
        prev = self.prev_block[b]
        return "first in its chain" if prev is None else f"chained after block {prev}"
