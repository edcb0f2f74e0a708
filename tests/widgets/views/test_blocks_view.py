"""The block grid (widgets/views/blocks.py): its cells are the snapshot's blocks, its hover their
owners and hash chains, its overlay the integrity violations; a click on a cell picks an owner."""

from __future__ import annotations

import numpy as np
from plotly.callbacks import Points
from widget_helpers import LONG, PROMPT, SYSTEM, flat_cells, grid_values

from nanovllm.engine.observe.snapshot import BLOCK_STATE_NAMES
from widgets.views.blocks import blocks_named, owner_label


def test_step_button_draws_the_engine_snapshot(wb):
    for i in range(3):
        wb.add_request(f"{i} {PROMPT}", max_tokens=8)
    wb.controls.step_button.click()
    snap = wb.llm.snapshot()
    assert len(wb.history) == 1 and wb.history.last_step == 0
    assert grid_values(wb) == snap.block_state.tolist()
    assert flat_cells(wb, "text") == [
        owner_label(snap.owners.get(b, ())) for b in range(snap.num_blocks)
    ]
    hover = flat_cells(wb, "hovertext")
    owned = next(iter(snap.owners))
    assert f"owners: seq {snap.owners[owned][0]}" in hover[owned]
    assert f"{BLOCK_STATE_NAMES[snap.block_state[owned]]}" in hover[owned]
    assert "<b>Step 0</b> (live)" in wb.metrics_panel.html
    assert wb.controls.slider.max == 0 and not wb.controls.slider.disabled
    wb.controls.steps.value = 3
    wb.controls.step_button.click()
    assert wb.history.last_step == 3 and len(wb.recorder.steps) == 4
    assert grid_values(wb) == wb.llm.snapshot().block_state.tolist()


def test_a_shared_blocks_label_fits_its_cell():
    """ "10,11,12,..." spilled over the neighbouring cells: the first owner and how many more."""
    assert owner_label(()) == "" and owner_label((7,)) == "7"
    assert owner_label((10, 11, 12, 13)) == "10+3"


def test_hash_chain_and_cached_blocks_in_hover(wb):
    wb.add_request(LONG, max_tokens=2)
    wb.step(10)  # runs to completion: its full blocks stay cached-free
    snap = wb.llm.snapshot()
    cached = [
        b for b in range(snap.num_blocks) if BLOCK_STATE_NAMES[snap.block_state[b]] == "cached"
    ]
    assert cached, "a finished request leaves its full blocks in the prefix cache"
    hover = flat_cells(wb, "hovertext")
    texts = [hover[b] for b in cached]
    assert all("holds a prefix hash" in t for t in texts)
    first = [b for b in cached if "first in its chain" in hover[b]]
    assert len(first) == 1
    # each other block names the block holding its parent hash: the chain, read from the snapshot
    by_hash = {int(snap.block_hash[b]): b for b in cached}
    for b in cached:
        if b not in first:
            assert f"chained after block {by_hash[int(snap.parent_hash[b])]}" in hover[b]


def test_integrity_overlay_marks_the_blocks_a_violation_names(wb):
    wb.add_request(PROMPT, max_tokens=8)
    wb.step(2)
    wb.controls.integrity.value = True
    assert wb.integrity_overlay and not wb.block_view.problems
    assert "integrity check: <span style='color:#047857'><b>OK" in wb.metrics_panel.html
    block = next(iter(wb.llm.snapshot().owners))
    wb.llm.block_manager.blocks[
        block
    ].ref_count += 1  # corrupt the cache (a test may; widgets never)
    try:
        wb.step(1)
        assert wb.block_view.problems
        overlay = wb.block_view.figure.data[1]
        assert (overlay.x[0], overlay.y[0]) == wb.block_view.position(block)
        assert f"block {block} has ref_count" in overlay.text[0]
        assert "violation" in wb.metrics_panel.html
    finally:
        wb.llm.block_manager.blocks[block].ref_count -= 1
    wb.integrity_overlay = False
    assert wb.controls.integrity.value is False and "integrity check: off" in wb.metrics_panel.html


def test_blocks_named_reads_every_integrity_message_format():
    assert blocks_named("block 5 is in the free list with ref_count 3") == {5}
    assert blocks_named("block 7 has ref_count 2, but 1 sequence(s) hold it") == {7}
    assert blocks_named("hash table maps 0x1f to block 9, whose hash differs") == {9}
    assert blocks_named("waiting seq 4 holds blocks [1, 2]") == {1, 2}
    assert blocks_named("seq 3 lists a block twice: [4, 6, 4]") == {4, 6}
    assert blocks_named("seq 3 computed more tokens than its blocks hold") == set()


def test_clicks_on_the_grid_pick_the_owners_in_turn(wb):
    a = wb.add_request(SYSTEM + [200, 201], max_tokens=24, ignore_eos=True)
    wb.step(2)
    b = wb.add_request(SYSTEM + [300, 301], max_tokens=24, ignore_eos=True)
    wb.step(2)
    shared = wb.llm.request_sequences(a)[0].block_table[0]  # a's and b's first block
    assert wb.llm.request_sequences(b)[0].block_table[0] == shared
    x, y = wb.block_view.position(shared)
    cells = wb.block_view.figure.data[0]
    click = Points(point_inds=[[y, x]], xs=[x], ys=[y], trace_name="blocks", trace_index=0)
    cells._dispatch_on_click(click, None)
    assert wb.selection.picked == a  # its first owner
    cells._dispatch_on_click(click, None)
    assert wb.selection.picked == b  # a shared block: the next owner
    assert wb.block_table_view.picker.value == b  # the dropdown follows
    outline = wb.block_view.figure.data[2]
    seq = wb.llm.request_sequences(b)[0]
    assert sorted(zip(outline.x, outline.y)) == sorted(
        wb.block_view.position(j) for j in seq.block_table
    )
    free = wb.llm.block_manager.num_blocks - 1  # never allocated in this short run
    fx, fy = wb.block_view.position(free)
    cells._dispatch_on_click(Points([[fy, fx]], [fx], [fy], "blocks", 0), None)
    assert (
        wb.selection.picked == b
        and f"block {free} belongs to no request" in wb.controls.status.value
    )
    assert np.asarray(cells.z).shape == (wb.block_view.nrows, wb.block_view.ncols)
