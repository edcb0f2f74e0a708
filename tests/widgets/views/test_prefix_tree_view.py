"""The prefix-cache tree (widgets/views/prefix_tree.py) and its data (observe/prefix_tree.py):
the nodes are the hashes the cache holds, the edges the hash chain's parent links computed
independently; cached-free blocks keep their edge; eviction positions equal the free list's
order; a shared prompt is one trunk."""

from __future__ import annotations

import numpy as np
from widget_helpers import BS, GREEDY, QUESTIONS, SYSTEM, hand_chain

from nanovllm import SamplingParams
from nanovllm.engine.observe.prefix_tree import layout, prefix_tree, skeleton
from nanovllm.engine.observe.snapshot import EngineSnapshot
from widgets.views import DrawContext, ViewSetup
from widgets.views.prefix_tree import MAX_HEIGHT, MIN_HEIGHT, ROW_PX, PrefixTreeView


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
    title = view.figure.layout.title.text
    assert f"{len(free)} cached-free, 1 chain<br>" in title  # not "1 chains"
    assert "#k: cached-free, k-th in line to be evicted" in title  # the labels, explained
    assert marks.textfont.size >= 11 and view.figure.layout.yaxis.title.text
    # neighbours in a chain put their labels on opposite sides (side by side, "#255"s overlapped)
    assert len(marks.textposition) == len(marks.x)  # one place per label
    place = {x: p for x, p in zip(marks.x, marks.textposition)}
    assert len(place) > 2 and all(place[x] != place[x + 1] for x in place if x + 1 in place)
    assert marks.cliponaxis is False  # a label above the first row is not cut off


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


def test_a_tree_from_kv_events_is_drawn_stored_state_unknown(tiny_model):
    """vLLM's events carry no ref counts and no block ids: every node is drawn slate, unlabelled,
    the legend says why, and the hover shows the block's tokens as text instead."""
    from html import escape

    from cache_helpers import BS, H, cache_of, trunk_and_branches
    from transformers import AutoTokenizer

    from nanovllm.engine.observe.block_table import short_hash
    from nanovllm.engine.observe.prefix_tree import TreeNode
    from widgets.views import DrawContext, ViewSetup
    from widgets.views.prefix_tree import (
        BLOCK_STATE_COLORS,
        UNKNOWN_COLOR,
        PrefixTreeView,
        _color,
    )

    source = cache_of(trunk_and_branches()[:2], tokenizer=tiny_model)
    view = PrefixTreeView(ViewSetup(num_blocks=0, block_size=0))
    view.draw(DrawContext(cache=source))
    edges, orphans, marks = view.figure.data
    assert view.tree.nodes.keys() == set(map(H, range(1, 7))) == source.model.nodes.keys()
    assert len(edges.x) == 3 * len(view.tree.edges) == 3 * 5
    assert list(marks.marker.color) == [UNKNOWN_COLOR] * 6
    assert UNKNOWN_COLOR not in BLOCK_STATE_COLORS
    assert all(t == " " for t in marks.text)  # no "#k", no "×n": nothing known to count
    title = view.figure.layout.title.text
    assert title.startswith("Prefix cache, from KV events: 6 stored blocks, 1 chain<br>")
    assert "no ref counts" in title and "#k" not in title
    assert view.figure.layout.xaxis.title.text == f"block in the chain (tokens of {BS})"
    tok = AutoTokenizer.from_pretrained(tiny_model)
    for h, node in source.model.nodes.items():  # each node's hover: its place and its text
        (hover,) = [t for t in marks.hovertext if t.startswith(f"hash {short_hash(h)},")]
        assert "no block id" in hover and "physical block" not in hover
        assert f"tokens: {escape(tok.decode(list(node.token_ids)))!r}" in hover
        i = view.tree.chain_index(h)
        assert f"block {i} of its chain: tokens {i * BS}..{(i + 1) * BS - 1}" in hover
    # an engine's node (a ref count) keeps its look: the colour is the state's
    used = TreeNode(7, None, (0,), 1, None)
    assert _color(used) != UNKNOWN_COLOR

    source.model.apply(trunk_and_branches()[2])  # 6 evicted: the tree and the figure follow
    view.draw(DrawContext(cache=source))
    assert len(view.figure.data[2].x) == 5 and H(6) not in view.tree.nodes


def branches_snapshot(branches: int, length: int) -> EngineSnapshot:
    """A one-block trunk (shared by two requests) with ``branches`` cached-free chains of
    ``length`` blocks below it: ``branches`` rows (one when there are none)."""
    hashes, parents, ref = [1], [0], [2]
    for c in range(branches):
        prev = 1
        for k in range(length):
            hashes.append(1000 + 100 * c + k)
            parents.append(prev)
            ref.append(0)
            prev = hashes[-1]
    n = len(hashes)
    return EngineSnapshot(
        step=0,
        block_size=BS,
        block_state=np.ones(n, np.uint8),
        ref_count=np.array(ref, np.int32),
        has_hash=np.ones(n, bool),
        owners={},
        token_range={},
        sequences=(),
        block_hash=np.array(hashes, np.uint64),
        parent_hash=np.array(parents, np.uint64),
        has_parent=np.arange(n) > 0,
        free_order=np.arange(1, n, dtype=np.int32),
    )


def test_the_prefix_tree_is_as_high_as_its_rows():
    """A tree of one or two rows took a fixed 260 px (a large blank area); now each row (branch
    end) gets ``ROW_PX`` of plot (and half a row below the last, for its labels) and the margins
    their own, between a floor (the title's two lines, one row, the x axis) and a ceiling (a
    large tree's rows are squeezed, not scrolled)."""

    def drawn(branches: int, length: int = 3):
        view = PrefixTreeView(ViewSetup(num_blocks=8, block_size=BS))
        ctx = DrawContext(step=0)
        ctx.prefix_tree = prefix_tree(branches_snapshot(branches, length))
        view.draw(ctx)
        layout = view.figure.layout
        plot = layout.height - layout.margin.t - layout.margin.b
        return layout, plot

    one, plot = drawn(0)  # a single block
    assert one.height == MIN_HEIGHT <= 170 and plot >= ROW_PX  # was 260
    assert one.yaxis.title.text == ""  # no room beside one row for the y axis's words
    heights = []
    assert drawn(2)[0].yaxis.title.text == "" and drawn(3)[0].yaxis.title.text  # room from 3 on
    for rows in (1, 2, 3, 5, 8, 12):
        layout, plot = drawn(rows)
        heights.append(layout.height)
        assert plot >= ROW_PX * rows, (rows, layout.height)  # every row its band: no overlap
        assert sorted(layout.yaxis.range) == [-0.5, rows] and layout.yaxis.autorange is False
        assert layout.yaxis.range[0] > layout.yaxis.range[1]  # the first branch on top
    assert heights == sorted(heights) and heights[2] < 260 < heights[-1], heights  # 3 rows: 205
    assert heights[-1] == layout.margin.t + layout.margin.b + ROW_PX * 12.5  # fitted
    assert layout.yaxis.title.text == "a row per branch end"
    many, plot = drawn(200, 1)  # 200 rows: capped, the rows share the plot
    assert many.height == MAX_HEIGHT and sorted(many.yaxis.range) == [-0.5, 200]
