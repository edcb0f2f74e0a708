"""The block-table view (widgets/views/block_table.py) and its data (observe/block_table.py):
the entries equal the sequence's ``block_table``, fills the tokens each block holds, hashes the
chain computed by hand with ``chain_hash``; the grid outlines the same blocks."""

from __future__ import annotations

from widget_helpers import BS, GREEDY, QUESTIONS, SYSTEM, hand_chain

from nanovllm.engine.observe.block_table import block_table


def test_block_table_equals_the_sequences_table(llm):
    ids = [llm.add_request(SYSTEM + q, GREEDY) for q in QUESTIONS[:1]]
    llm.step()  # the first request's blocks are committed: the next ones hit them
    ids += [llm.add_request(SYSTEM + q, GREEDY) for q in QUESTIONS[1:]]
    for _ in range(6):
        llm.step()
        snap = llm.snapshot()
        for i in ids:
            seq = llm.request_sequences(i)[0]
            entries = block_table(snap, i)
            assert [e.physical for e in entries] == seq.block_table
            assert [e.logical for e in entries] == list(range(len(seq.block_table)))
            assert [e.fill for e in entries] == [
                len(seq.token_ids[k * BS : (k + 1) * BS]) for k in range(len(seq.block_table))
            ]
            bm = llm.block_manager
            assert [e.ref_count for e in entries] == [
                bm.blocks[j].ref_count for j in seq.block_table
            ]
            assert all(set(e.owners) >= {i} for e in entries)
            full = seq.num_computed_tokens // BS
            chain = hand_chain(seq.token_ids, full)
            assert [e.hash for e in entries[:full]] == chain
            assert [e.parent_hash for e in entries[:full]] == [None, *chain[:-1]]
            assert all(e.hash is None for e in entries[full:])
    shared = block_table(snap, ids[1])[:2]  # the system prompt's full blocks, found in the cache
    assert [e.physical for e in shared] == [e.physical for e in block_table(snap, ids[0])[:2]]
    assert all(e.ref_count == 3 and len(e.owners) == 3 for e in shared)


def test_picked_request_is_drawn_and_outlined(wb):
    a = wb.add_request(SYSTEM + QUESTIONS[0], max_tokens=24, ignore_eos=True)
    wb.step(2)
    b = wb.add_request(SYSTEM + QUESTIONS[1], max_tokens=24, ignore_eos=True)
    wb.step(3)
    view = wb.block_table_view
    assert [v for _, v in view.picker.options] == [None, b, a]  # newest first
    assert view.picker.label == "(pick a request)"  # shown, not an empty box
    view.picker.value = b  # as the browser sets it
    seq = wb.llm.request_sequences(b)[0]
    assert [e.physical for e in view.entries] == seq.block_table
    assert wb.selection.picked == b  # the dropdown's choice is the one Selection
    cap, used, done, arrows, phys = view.figure.data
    assert len(cap.y) == len(seq.block_table)
    assert list(used.x) == [e.fill / view.setup.block_size for e in view.entries]
    assert sorted(int(t) for t in phys.text) == sorted(seq.block_table)
    assert f"seq {b}" in view.figure.layout.title.text
    grid = wb.block_view
    outline = wb.block_view.figure.data[2]
    assert sorted(zip(outline.x, outline.y)) == sorted(grid.position(j) for j in seq.block_table)
    wb.step(2)  # live: the table follows the request as it grows
    seq = wb.llm.request_sequences(b)[0]
    assert [e.physical for e in view.entries] == seq.block_table
    assert sum(e.fill for e in view.entries) == seq.num_tokens
    # a hover holds the block's text, decoded from its tokens
    text = wb.llm.tokenizer.decode(seq.token_ids[:BS])
    assert repr(text)[:40].replace("'", "&#x27;") in used.hovertext[0]
    assert "→ physical block" in used.hovertext[0] and "&rarr;" not in used.hovertext[0]


def test_reset_clears_the_picked_request(wb):
    """The Reset button aborts every request: the one picked is gone, so nothing stays picked (the
    dropdown, the note beside it, the title and the grid's outline all say so), and the note names
    no request that no longer exists."""
    a = wb.add_request(SYSTEM + QUESTIONS[0], max_tokens=24, ignore_eos=True)
    wb.step(2)
    view = wb.block_table_view
    view.picker.value = a  # as the browser sets it
    assert wb.selection.picked == a and f"seq {a}" in view.figure.layout.title.text
    wb.controls.reset_button.click()
    assert wb.selection.picked is None
    assert view.picker.label == "(pick a request)" and view.picker.value is None
    assert view.figure.layout.title.text == "Block table: pick a request"
    assert "no request picked" in view.summary.value and f"seq {a}" not in view.summary.value
    assert list(wb.block_view.figure.data[2].x) == []  # no outline on the grid
    b = wb.add_request(SYSTEM + QUESTIONS[1], max_tokens=4)  # a new request is not picked
    wb.step(1)
    assert wb.selection.picked is None and view.entries == () and b != a


def test_the_dropdowns_no_pick_entry_unpicks(wb):
    """Choosing "(pick a request)" in the dropdown unpicks, as ``wb.pick(None)`` does."""
    a = wb.add_request(SYSTEM + QUESTIONS[0], max_tokens=24, ignore_eos=True)
    wb.step(2)
    view = wb.block_table_view
    view.picker.value = a  # as the browser sets it
    assert wb.selection.picked == a
    view.picker.value = None
    assert wb.selection.picked is None
    assert view.figure.layout.title.text == "Block table: pick a request"
    assert list(wb.block_view.figure.data[2].x) == []  # no outline on the grid


def test_nothing_picked_shows_every_table_at_a_glance(wb):
    """With no request picked the chart is its title line; below it, each request's physical
    blocks in logical order (bold: shared), so the column beside the requests list is not blank.
    Picking a request hides the overview; the table is drawn as before."""
    view = wb.block_table_view
    wb.step(1)
    assert view.overview.layout.display == "block" and "no requests yet" in view.overview.value
    a = wb.add_request(SYSTEM + QUESTIONS[0], max_tokens=24, ignore_eos=True)
    wb.step(2)  # a's system-prompt blocks are committed: b finds them in the cache
    b = wb.add_request(SYSTEM + QUESTIONS[1], max_tokens=24, ignore_eos=True)
    wb.step(2)
    html = view.overview.value
    assert view.overview.layout.display == "block" and view.figure.layout.height <= 80
    assert html.index(f"seq {b}") < html.index(f"seq {a}")  # newest first, as the requests list
    for i in (a, b):
        table = wb.llm.request_sequences(i)[0].block_table
        line = html.split(f"<b>seq {i}</b>")[1].split("</div>")[0]
        shared = [j for j in table if wb.llm.block_manager.blocks[j].ref_count > 1]
        assert shared, line  # the system prompt's full blocks
        words = [f"<b>{j}</b>" if j in shared else str(j) for j in table]
        assert f"{len(table)} blocks: " + " ".join(words) in line
    view.picker.value = a  # as the browser sets it
    assert view.overview.layout.display == "none" and f"seq {a}" in view.figure.layout.title.text
    wb.pick(None)  # back to none picked
    assert view.overview.layout.display == "block" and view.overview.value == html
