"""Grid cells for big caches: above ``MAX_CELLS`` blocks, one cell of the block grid summarizes
``k`` consecutive blocks (k a power of two), so what is sent per redraw stays ``<= MAX_CELLS``
values whatever the cache size (4,096 blocks of 256 on an H200: 1,024 cells of 4).

::

    blocks  0 1 2 3 | 4 5 6 7 | ...        k = 4
    cell       0    |    1    | ...        colour: the state most of its blocks are in
                                           hover: "blocks 4..7: used 3, free 1"

``cell_counts`` is the only aggregation: per cell, how many of its blocks are in each state; its
column sums are the snapshot's counts. Pure numpy, O(blocks) per redraw, no per-block strings.
"""

from __future__ import annotations

import math

import numpy as np

MAX_CELLS = 1024


def blocks_per_cell(num_blocks: int, max_cells: int = MAX_CELLS) -> int:
    """The smallest power of two k with ceil(num_blocks / k) <= max_cells (1 for small caches)."""
    return 2 ** max(0, math.ceil(math.log2(max(num_blocks, 1) / max_cells)))


def cell_counts(block_state: np.ndarray, k: int, num_states: int) -> np.ndarray:
    """int64 [cells, num_states]: row c counts the states of blocks c*k .. c*k + k - 1."""
    n = len(block_state)
    cells = -(-n // k)
    flat = (np.arange(n) // k) * num_states + block_state.astype(np.int64)
    return np.bincount(flat, minlength=cells * num_states).reshape(cells, num_states)


def dominant(counts: np.ndarray) -> np.ndarray:
    """Per cell, the state most of its blocks are in; a tie goes to the busier (higher) code, so a
    half-used cell shows as used, not free."""
    last = counts.shape[1] - 1
    return last - np.argmax(counts[:, ::-1], axis=1)


def cell_hover(counts: np.ndarray, k: int, num_blocks: int, names: tuple[str, ...]) -> list[str]:
    """One line per cell: its block range and the non-zero counts, busiest state first."""
    out = []
    for c, row in enumerate(counts.tolist()):
        first, last = c * k, min((c + 1) * k, num_blocks) - 1
        parts = [f"{names[s]} {row[s]}" for s in range(len(row) - 1, -1, -1) if row[s]]
        out.append(f"blocks {first}..{last}: " + ", ".join(parts))
    return out
