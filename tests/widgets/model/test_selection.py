"""The Selection (widgets/model/selection.py): which owner a grid click picks, and what the
block-table view draws for the picked request once it holds no blocks."""

from __future__ import annotations

from widgets.model.selection import Selection, pick_in, picked_table


def test_a_click_on_a_cell_walks_through_the_owners_of_its_first_held_block():
    owners = {4: (1, 2, 3), 6: (9,)}
    assert pick_in(owners, (4,), None) == 1
    assert pick_in(owners, (4,), 1) == 2 and pick_in(owners, (4,), 3) == 1  # next, wrapping
    assert pick_in(owners, (5, 6, 7), None) == 9  # a cell of several blocks: the first held one
    assert pick_in(owners, (0, 1), None) is None


def test_the_pinned_step_goes_live_once_it_leaves_the_history():
    s = Selection(pinned=3)
    assert s.shown_step(10) == 3
    s.forget_pinned_before(2)
    assert s.pinned == 3
    s.forget_pinned_before(4)
    assert s.pinned is None and s.shown_step(10) == 10


def test_a_finished_request_shows_its_last_kept_table(wb):
    """Notebook 08 after Run All: every request finished ("in 0 blocks"). The view draws the
    last kept step that had the request's blocks, and says why; with none kept, why not."""
    rid = wb.add_request("one two three " * 8, max_tokens=6, ignore_eos=True)
    wb.step(2)
    held = wb.llm.request_sequences(rid)[0].block_table
    wb.pick(rid)
    while wb.llm.has_unfinished():
        wb.step()
    ctx = wb.stage.context()
    assert ctx.picked.seq.status == "RUNNING" and not ctx.picked.current
    assert [e.physical for e in ctx.picked.entries][: len(held)] == held
    last = max(f.step for f in wb.history.frames if f.snapshot.owners)
    assert ctx.picked.as_of == last and "finished" in ctx.picked.why
    view = wb.block_table_view
    assert view.figure.layout.title.text.endswith(f"as after step {last}, its last with blocks")
    assert len(view.figure.data[0].y) == len(ctx.picked.entries)  # the bars are drawn
    assert "now finished: its blocks went back to the free list" in view.summary.value
    assert list(wb.block_view.figure.data[2].x) == []  # the grid outlines no blocks of the past
    nothing = picked_table(wb.llm.snapshot(), rid, earlier=())
    assert (
        nothing.entries == () and nothing.why.startswith("finished") and "no earlier" in nothing.why
    )
