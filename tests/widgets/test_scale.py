"""Scale: the workbench with thousands of blocks and hundreds of running requests (the H200 case is
4,000+ blocks of 256 and 256 requests). The views send a bounded number of values per redraw (the
block grid aggregates blocks into cells, the timeline windows its rows), and what they show still
equals the engine's own counts. Redraw times are printed, not asserted (a shared CPU machine)."""

from __future__ import annotations

import random
import re
import time

import numpy as np
import pytest

from nanovllm.engine.observe.snapshot import BLOCK_STATE_NAMES
from widgets import Workbench
from widgets.model.cells import MAX_CELLS

BIG = dict(
    kvcache_block_size=16,
    num_kvcache_blocks=4096,
    max_num_seqs=256,
    max_model_len=512,
    max_num_batched_tokens=16384,
)


@pytest.fixture(scope="module")
def big(tiny_model):
    bench = Workbench(tiny_model, BIG)
    rng = random.Random(0)
    for _ in range(256):
        prompt = [rng.randrange(10, 400) for _ in range(rng.randint(16, 300))]
        bench.add_request(prompt, max_tokens=64, ignore_eos=True)
    bench.step(3)  # one prefill of all 256, then decodes
    yield bench
    bench.close()


def test_the_grid_of_a_big_cache_sends_cells_whose_counts_equal_the_snapshot(big):
    snap = big.llm.snapshot()
    assert len([s for s in snap.sequences if s.status == "RUNNING"]) == 256
    view = big.block_view
    assert view.per_cell == 4 and view.num_cells == 1024
    started = time.perf_counter()
    big.redraw()
    print(f"\nredraw at 4096 blocks, 256 running: {(time.perf_counter() - started) * 1e3:.1f} ms")
    grid = view.figure.data[0]
    z = np.asarray(grid.z, dtype=float).ravel()
    hover = np.asarray(grid.hovertext, dtype=object).ravel()
    assert z.size == hover.size == view.nrows * view.ncols <= MAX_CELLS
    assert grid.text is None  # no per-block labels
    snap = big.llm.snapshot()  # redraw took its own; the cache has not moved since
    per_cell = np.zeros((view.num_cells, len(BLOCK_STATE_NAMES)), dtype=int)
    for c, line in enumerate(hover[: view.num_cells]):
        for name, n in re.findall(r"(\w+) (\d+)", line.split(": ", 1)[1]):
            per_cell[c, BLOCK_STATE_NAMES.index(name)] = int(n)
    totals = per_cell.sum(axis=0).tolist()
    assert totals == [snap.count(s) for s in range(len(BLOCK_STATE_NAMES))]
    assert totals[1] + totals[3] == int((snap.ref_count > 0).sum()) > 1024  # many blocks in use
    # each cell is coloured by the state most of its blocks are in (checked block by block)
    for c in range(view.num_cells):
        blocks = snap.block_state[c * 4 : (c + 1) * 4].tolist()
        assert blocks.count(int(z[c])) == max(blocks.count(s) for s in set(blocks))
    assert np.isnan(z[view.num_cells :]).all()


def test_the_timeline_and_the_messages_stay_small_at_256_requests(big):
    timings = []
    for _ in range(3):
        big.step()
        started = time.perf_counter()
        big.redraw()
        timings.append((time.perf_counter() - started) * 1e3)
    print("\nredraws (ms):", ", ".join(f"{t:.1f}" for t in timings))
    timeline = big.timeline_view.figure.data[0]
    assert len(timeline.y) == big.timeline_view.max_rows < 256  # a window of the rows
    assert np.asarray(timeline.z, dtype=object).shape == (len(timeline.y), len(timeline.x))
    overlay = big.block_view.figure.data[1]
    assert len(overlay.x) == 0
    # the integrity overlay marks the cell of a block it names
    view = big.block_view
    assert view.position(4095) == view.position(4092) == (1023 % view.ncols, 1023 // view.ncols)
    assert view.position(4091) != view.position(4092)
