"""Grid cells for big caches (widgets/model/cells.py): a cell summarizes a power-of-two run of
blocks, coloured by the state most of them are in."""

from __future__ import annotations

import numpy as np

from widgets.model.cells import blocks_per_cell, cell_counts, dominant


def test_blocks_per_cell_is_the_smallest_power_of_two_that_fits():
    assert [blocks_per_cell(n) for n in (64, 1024, 1025, 4096, 4097, 100_000)] == [
        1,
        1,
        2,
        4,
        8,
        128,
    ]
    state = np.array([0, 1, 1, 3, 2, 2, 0, 0, 1], dtype=np.uint8)
    counts = cell_counts(state, 4, 4)
    assert counts.tolist() == [[1, 2, 0, 1], [2, 0, 2, 0], [0, 1, 0, 0]]
    assert dominant(counts).tolist() == [1, 2, 1]  # cell 1: a tie of free and cached -> cached
