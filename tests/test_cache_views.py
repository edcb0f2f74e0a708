"""The inside-the-cache views, without a browser: each one's data equals the engine's own.

- block table (observe/block_table.py, widgets/_block_table.py): the entries equal the sequence's
  ``block_table``; fills equal the tokens each block holds; hashes equal the chain computed by hand
  with ``chain_hash``; the grid outlines the same blocks; picking by dropdown, grid click and
  timeline click.
- prefix tree (observe/prefix_tree.py, widgets/_prefix_tree.py): the nodes are the hashes the
  cache holds, the edges the hash chain's parent links computed independently; cached-free blocks
  keep their edge; eviction positions equal the free list's order; a shared prompt is one trunk.
- requests panel (observe/request_rows.py, widgets/_requests.py): rows equal the engine's
  sequences (state, token counts, finish reason); a row's Abort aborts that request.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from plotly.callbacks import Points

from nanovllm import LLM, SamplingParams
from nanovllm.engine.core.block_manager import chain_hash
from nanovllm.engine.observe.block_table import block_table
from nanovllm.engine.observe.prefix_tree import layout, prefix_tree, skeleton
from nanovllm.engine.observe.request_rows import request_rows
from nanovllm.engine.observe.snapshot import EngineSnapshot
from widgets import TEACHING_DEFAULTS, Workbench
from widgets._block_table import owner_to_pick

BS = 16
SYSTEM = list(range(100, 140))  # 40 tokens: two full blocks and 8 over
QUESTIONS = [list(range(200 + 20 * k, 212 + 20 * k)) for k in range(3)]  # 12 tokens each
GREEDY = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)


def hand_chain(tokens: list[int], num_blocks: int) -> list[int]:
    """The chained hashes of the first ``num_blocks`` full blocks, by hand."""
    hashes, prev = [], None
    for i in range(num_blocks):
        prev = chain_hash(prev, tokens[i * BS : (i + 1) * BS])
        hashes.append(prev)
    return hashes


@pytest.fixture
def llm(tiny_model):
    engine = LLM(tiny_model, kvcache_block_size=BS, num_kvcache_blocks=48, max_model_len=256)
    yield engine
    engine.close()


@pytest.fixture
def wb(tiny_model):
    bench = Workbench(tiny_model, TEACHING_DEFAULTS, window=1000, snapshot_every_step=True)
    yield bench
    bench.close()


# ---- block table --------------------------------------------------------------------------------
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
    cap, used, done, arrows, phys = view.figure.data
    assert len(cap.y) == len(seq.block_table)
    assert list(used.x) == [e.fill / view.block_size for e in view.entries]
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


def test_clicks_on_the_grid_and_timeline_pick(wb):
    a = wb.add_request(SYSTEM + QUESTIONS[0], max_tokens=24, ignore_eos=True)
    wb.step(2)
    b = wb.add_request(SYSTEM + QUESTIONS[1], max_tokens=24, ignore_eos=True)
    wb.step(2)
    shared = wb.llm.request_sequences(a)[0].block_table[0]  # a's and b's first block
    assert wb.llm.request_sequences(b)[0].block_table[0] == shared
    x, y = wb.block_view.position(shared)
    cells = wb.block_view.figure.data[0]
    click = Points(point_inds=[[y, x]], xs=[x], ys=[y], trace_name="blocks", trace_index=0)
    cells._dispatch_on_click(click, None)
    assert wb.block_table_view.picked == a  # its first owner
    cells._dispatch_on_click(click, None)
    assert wb.block_table_view.picked == b  # a shared block: the next owner
    assert wb.block_table_view.picker.value == b  # the dropdown follows
    row = Points(point_inds=[0], xs=[1], ys=[f"seq {a}"], trace_name="states", trace_index=0)
    wb.timeline_view.figure.data[0]._dispatch_on_click(row, None)
    assert wb.block_table_view.picked == a
    free = wb.llm.block_manager.num_blocks - 1  # never allocated in this short run
    assert owner_to_pick(wb.dashboard.snapshot, free, a) is None


def test_a_figure_the_page_drew_blank_is_renewed_and_still_answers_clicks(wb):
    """The page reports (DrawAck.blank) a figure whose model lost its messages: the dashboard
    puts a new FigureWidget with the same data and layout in its box, clicks reach the new one,
    and after MAX_RENEWALS tries the status line says so."""
    from widgets._workbench import MAX_RENEWALS

    a = wb.add_request(SYSTEM + QUESTIONS[0], max_tokens=8, ignore_eos=True)
    wb.step(2)
    old = wb.block_view.figure
    wb.backpressure.ack.blank = ["blocks"]  # as the page does
    new = wb.block_view.figure
    assert new is not old and wb.renewed == ["blocks"]
    assert wb.dashboard.figure_boxes["blocks"].children == (new,)
    assert new.layout.title.text == old.layout.title.text
    np.testing.assert_array_equal(np.asarray(new.data[0].z), np.asarray(old.data[0].z))
    x, y = wb.block_view.position(wb.llm.request_sequences(a)[0].block_table[0])
    click = Points(point_inds=[[y, x]], xs=[x], ys=[y], trace_name="blocks", trace_index=0)
    new.data[0]._dispatch_on_click(click, None)
    assert wb.block_table_view.picked == a
    wb.step(1)  # redraws go to the new figure
    assert new.layout.title.text.startswith(f"KV cache blocks after step {wb.shown_step}")
    for _ in range(MAX_RENEWALS + 1):  # the page keeps drawing it blank
        wb.backpressure.ack.blank = []
        wb.backpressure.ack.blank = ["blocks"]
    assert wb.renewed == ["blocks"] * MAX_RENEWALS
    assert "did not set up the blocks view" in wb.controls.status.value
    wb.backpressure.ack.blank = ["no such view"]  # ignored
    assert wb.renewed == ["blocks"] * MAX_RENEWALS


# ---- prefix tree --------------------------------------------------------------------------------
def expected_edges(llm, outputs) -> tuple[set[int], set[tuple[int, int]]]:
    """The cache's hashes, and the hash chain's parent links between them, from the outputs'
    tokens (every computed full block: all tokens but the last sampled one)."""
    held = {b.hash for b in llm.block_manager.blocks if b.hash is not None}
    edges = set()
    for out in outputs:
        tokens = out.prompt_token_ids + out.outputs[0].token_ids
        chain = hand_chain(tokens, (len(tokens) - 1) // BS)
        edges |= {(p, h) for p, h in zip(chain, chain[1:]) if p in held and h in held}
    return held, edges


def test_prefix_tree_edges_are_the_hash_chains_links(llm):
    outs = llm.generate([SYSTEM + QUESTIONS[0]], GREEDY, use_tqdm=False)
    outs += llm.generate([SYSTEM + q for q in QUESTIONS[1:]], GREEDY, use_tqdm=False)
    snap = llm.snapshot()
    tree = prefix_tree(snap)
    held, edges = expected_edges(llm, outs)
    assert set(tree.nodes) == held
    assert set(tree.edges) == edges and edges  # all cached-free now: every edge survived
    assert all(n.cached_free for n in tree.nodes.values())
    trunk = hand_chain(SYSTEM, 2)
    assert tree.roots == [trunk[0]]  # one trunk: the system prompt's first block
    assert tree.children[trunk[0]] == [trunk[1]]
    assert len(tree.children[trunk[1]]) == len(QUESTIONS)  # a branch per question
    free = list(llm.block_manager.free)
    for n in tree.nodes.values():
        [block] = n.blocks
        assert n.eviction == free.index(block)
    pos = layout(tree)
    leaves = [h for h in tree.nodes if not tree.children.get(h)]
    assert sorted(pos[h][1] for h in leaves) == list(range(len(leaves)))  # a row per leaf
    for parent, child in tree.edges:
        assert pos[child][0] == pos[parent][0] + 1
        kids = [pos[k][1] for k in tree.children[parent]]
        assert min(kids) <= pos[parent][1] <= max(kids)
    assert {pos[h][0] for h in trunk} == {0, 1}


def test_prefix_tree_follows_requests(llm):
    rid = llm.add_request(SYSTEM + QUESTIONS[0], GREEDY)
    llm.step()
    live = prefix_tree(llm.snapshot())  # 52 prompt tokens: three full blocks, in use
    assert [n.ref_count for n in live.nodes.values()] == [1, 1, 1]
    assert all(n.eviction is None for n in live.nodes.values())
    while llm.has_unfinished():
        llm.step()
    out = llm.get_output(rid)
    tree = prefix_tree(llm.snapshot())
    held, edges = expected_edges(llm, [out])
    assert set(tree.edges) == edges and len(edges) == len(tree.nodes) - 1
    order = sorted(tree.nodes, key=lambda h: tree.nodes[h].eviction)
    chain = hand_chain(out.prompt_token_ids + out.outputs[0].token_ids, len(tree.nodes))
    assert order == chain[::-1]  # freed tail first, so the tail is evicted first
    # unrelated prompts that need more than the never-used blocks: the first to go are the
    # ones the tree says are evicted first
    big = [[1 + j] + [300 + k % 200 for k in range(n - 1)] for j, n in enumerate((250, 250, 224))]
    llm.generate(big, SamplingParams(max_tokens=1), use_tqdm=False)
    after = prefix_tree(llm.snapshot())
    gone = [h for h in order if h not in after.nodes]
    assert gone and gone == order[: len(gone)]
    assert all(p in after.nodes and c in after.nodes for p, c in after.edges)
    assert not llm.check_integrity()


def test_prefix_tree_view_draws_the_tree(wb):
    wb.add_request(SYSTEM + QUESTIONS[0], max_tokens=4, ignore_eos=True)
    wb.step(2)
    for q in QUESTIONS[1:]:
        wb.add_request(SYSTEM + q, max_tokens=4, ignore_eos=True)
    wb.step(20)
    view = wb.prefix_tree_view
    edges, orphans, marks = view.figure.data
    tree = prefix_tree(wb.llm.snapshot())
    assert len(marks.x) == len(tree.nodes) == len(view.tree.nodes)
    assert len(edges.x) == 3 * len(tree.edges)
    free = [n for n in tree.nodes.values() if n.cached_free]
    assert sorted(t for t in marks.text if t.startswith("#")) == sorted(
        f"#{n.eviction}" for n in free
    )
    assert f"{len(free)} cached-free" in view.figure.layout.title.text


def test_skeleton_of_a_large_tree_keeps_branches_and_leaves():
    """A synthetic cache of 4096 blocks: 256 chains of 15 blocks below a 1-block trunk."""
    n, chains, length = 4096, 256, 15
    hashes = np.zeros(n, np.uint64)
    parents = np.zeros(n, np.uint64)
    has_parent = np.zeros(n, bool)
    hashes[0] = 1
    b = 1
    for c in range(chains):
        prev = 1
        for k in range(length):
            hashes[b] = 1000 + 100 * c + k
            parents[b], has_parent[b] = prev, True
            prev, b = int(hashes[b]), b + 1
    snap = EngineSnapshot(
        step=0,
        block_size=256,
        block_state=np.ones(n, np.uint8),
        ref_count=np.ones(n, np.int32),
        has_hash=np.arange(n) < b,
        owners={},
        token_range={},
        sequences=(),
        block_hash=hashes,
        parent_hash=parents,
        has_parent=has_parent,
        free_order=np.zeros(0, np.int32),
    )
    tree = prefix_tree(snap)
    assert len(tree.nodes) == b and len(tree.edges) == b - 1
    keep = skeleton(tree)
    assert len(keep) == 1 + 2 * chains  # trunk, each branch's first node and its leaf
    pos = layout(tree)
    assert len({pos[h][1] for h in tree.nodes if not tree.children.get(h)}) == chains


# ---- requests panel -----------------------------------------------------------------------------
def test_request_rows_equal_the_engines_sequences(wb):
    ids = [wb.add_request(SYSTEM + q, max_tokens=6 + k, ignore_eos=True) for k, q in
           enumerate(QUESTIONS)]  # fmt: skip
    wb.step(3)
    wb.abort(ids[1])
    wb.step(12)
    snap = wb.llm.snapshot()
    rows = {r.seq_id: r for r in request_rows(snap)}
    for i in ids:
        seq = wb.llm.request_sequences(i)[0]
        r = rows[i]
        assert r.status == seq.status.value
        assert r.num_prompt_tokens == seq.num_prompt_tokens
        assert r.num_completion_tokens == seq.num_completion_tokens
        assert r.num_cached_tokens == seq.num_cached_tokens
        assert r.finish_reason == (seq.finish_reason.value if seq.finish_reason else None)
        if seq.num_completion_tokens > 1:
            assert r.ttft == pytest.approx(seq.first_token_time - seq.arrival_time)
            assert r.inter_token > 0
    assert rows[ids[1]].finish_reason == "abort"
    panel = wb.requests_panel
    assert [r.seq_id for r in panel.shown] == sorted(ids, reverse=True)
    shown = [s for s in panel.slots if s.seq_id is not None]
    assert [s.seq_id for s in shown] == sorted(ids, reverse=True)
    assert all(s.abort_button.disabled for s in shown)  # all finished
    drawn = panel.table.value.split("<b>seq ")[1:]  # the rows as drawn, top to bottom
    for s, html in zip(shown, drawn, strict=True):
        seq = wb.llm.request_sequences(s.seq_id)[0]
        assert html.startswith(f"{s.seq_id}</b>") and seq.status.value in html
        # a long line is clipped at the panel's edge: its whole text is the line's tooltip
        (text_line,) = re.findall(r"title='([^']*)'>([^<]*)</div>", html)
        assert text_line[0] == text_line[1] and " → " in text_line[0]
        assert f"title='seq {s.seq_id} {seq.status.value}" in panel.table.value


def test_abort_from_a_row(wb):
    ids = [wb.add_request(SYSTEM + q, max_tokens=40, ignore_eos=True) for q in QUESTIONS]
    wb.step(2)
    panel = wb.requests_panel
    slot = next(s for s in panel.slots if s.seq_id == ids[1])
    assert not slot.abort_button.disabled
    slot.abort_button.click()  # as the browser does
    seq = wb.llm.request_sequences(ids[1])[0]
    assert seq.is_finished and seq.finish_reason.value == "abort"
    row = panel.table.value.split(f"<b>seq {ids[1]}</b>")[1].split("<b>seq ")[0]
    assert slot.abort_button.disabled and "FINISHED (abort)" in row  # drawn at once
    assert wb.history.latest.record.events[-1].seq_id == ids[1]  # the event is in the History
    others = [wb.llm.request_sequences(i)[0] for i in (ids[0], ids[2])]
    assert not any(s.is_finished for s in others)


def test_rows_are_capped_and_an_unchanged_panel_sends_nothing(wb):
    ids = [wb.add_request([5 + k, 6, 7, 8], max_tokens=3, ignore_eos=True) for k in range(14)]
    wb.step(1)
    panel = wb.requests_panel
    assert len(panel.rows) == 14 and [r.seq_id for r in panel.shown] == sorted(ids)[::-1][:10]
    assert "newest 10 shown" in panel.header.value
    wb.step(10)  # all finish
    sent = []
    for w in (panel.header, panel.table, *(s.abort_button for s in panel.slots)):
        w.observe(lambda ch: sent.append(ch), names=["value", "disabled"])
    wb.redraw()  # nothing changed: nothing is set again
    assert sent == []


def test_texts_show_a_pending_token_as_an_ellipsis(tiny_model):
    """Between two overlapped steps a sequence's last token is a placeholder: the views' text
    shows it as "…", decodes the rest, and caches nothing for that span."""
    from widgets._texts import SequenceText

    config = dict(TEACHING_DEFAULTS, overlap_scheduling=True)
    with LLM(tiny_model, **config) as engine:
        rid = engine.add_request([5, 6, 7, 8], SamplingParams(max_tokens=4, ignore_eos=True))
        engine.step_overlapped()  # launched (and advanced): its token is pending
        seq = engine.request_sequences(rid)[0]
        assert seq.token_ids[-1] < 0
        texts = SequenceText(lambda: engine)
        shown = texts.text(rid, 0, seq.num_tokens)
        assert shown == engine.tokenizer.decode([5, 6, 7, 8]) + "…"
        assert not texts._cache
        engine.drain()
        assert texts.text(rid, 0, seq.num_tokens) == engine.tokenizer.decode(seq.token_ids)
