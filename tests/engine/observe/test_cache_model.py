"""PrefixCacheModel (observe/cache_model.py) and CacheEventDiffer (observe/cache_events.py)."""

from __future__ import annotations

import pytest

from nanovllm.engine.observe.cache_events import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    CacheEventDiffer,
    EventBatch,
)
from nanovllm.engine.observe.cache_model import PrefixCacheModel


def stored(hashes, parent, bs=2, tokens=None):
    tokens = tokens if tokens is not None else [h for h in hashes for _ in range(bs)]
    return BlockStored(tuple(hashes), parent, tuple(tokens), bs)


def test_a_trunk_and_branches_evictions_and_orphans():
    m = PrefixCacheModel()
    m.apply(EventBatch(1.0, (stored([1, 2], None), stored([3], 2), stored([4, 5], 2))))
    tree = m.tree()
    assert tree.roots == [1] and tree.children[2] == [3, 4] and tree.children[4] == [5]
    assert tree.nodes[5].token_ids == (5, 5) and tree.nodes[5].ref_count is None
    assert m.chain(5) == [1, 2, 4, 5] and m.chain_tokens(5) == (1, 1, 2, 2, 4, 4, 5, 5)
    (trunk,) = m.longest_shared_prefixes()
    assert (trunk.hash, trunk.num_blocks, trunk.branches) == (2, 2, 2)
    assert trunk.token_ids == (1, 1, 2, 2)

    m.apply(EventBatch(3.5, (BlockRemoved((4,)),)))  # 5 stays, an orphan
    (ev,) = m.evictions
    assert (ev.hash, ev.chain_index, ev.lifetime, ev.token_ids) == (4, 2, 2.5, (4, 4))
    assert m.tree().roots == [1, 5] and m.tree().orphans == [5]
    assert m.chain_index(5) is None
    m.apply(EventBatch(4.0, (BlockRemoved((99,)),)))
    assert m.unknown_removed == 1

    occ = m.occupancy()
    assert occ.blocks.tolist() == [5, 4, 4] and occ.stored.tolist() == [5, 5, 5]
    assert occ.removed.tolist() == [0, 1, 1] and occ.ts.tolist() == [1.0, 3.5, 4.0]


def test_a_hash_stored_twice_is_held_once_and_a_clear_empties():
    m = PrefixCacheModel()
    m.apply(EventBatch(0.0, (stored([1, 2], None),)))
    m.apply(EventBatch(1.0, (stored([1], None),)))  # vLLM's "full" report mode: a reuse
    assert len(m.nodes) == 2 and m.restored == 1 and m.nodes[1].stores == 2
    m.apply(EventBatch(2.0, (AllBlocksCleared(), stored([7], None))))
    assert list(m.nodes) == [7] and m.clears == 1 and m.removed == 2


def test_a_store_whose_tokens_do_not_fill_its_blocks_keeps_the_chain_without_tokens():
    m = PrefixCacheModel()
    m.apply(EventBatch(0.0, (stored([1, 2], None, tokens=[1, 2, 3]),)))
    assert m.bad_stores == 1 and m.nodes[2].parent == 1 and m.nodes[2].token_ids is None
    assert m.chain_tokens(2) is None


def test_rates_and_bounds():
    m = PrefixCacheModel(history=3, max_evictions=2)
    for t in range(6):
        m.apply(EventBatch(float(t), (stored([t], None), BlockRemoved((t - 1,)))))
    assert len(m.occupancy().ts) == 3 and len(m.evictions) == 2
    stored_per_s, removed_per_s = m.rates(window=2.0, now=5.0)
    assert stored_per_s == pytest.approx(1.0) and removed_per_s == pytest.approx(1.0)
    with pytest.raises(ValueError, match="history"):
        PrefixCacheModel(history=0)


def test_the_differ_reports_runs_with_parents_first(tiny_model):
    from nanovllm import LLM, SamplingParams

    system = list(range(10, 42))  # two blocks of 16
    with LLM(tiny_model, kvcache_block_size=16, max_model_len=128) as llm:
        differ = CacheEventDiffer()
        assert differ.diff(llm) == []
        for tail in ([50, 51], [60, 61]):
            llm.add_request(system + tail, SamplingParams(temperature=0, max_tokens=1))
        llm.step()
        events = differ.diff(llm)
        assert len(events) == 1 and events[0].block_hashes == tuple(differ.held)
        assert events[0].parent_block_hash is None and events[0].token_ids == tuple(system)
        assert differ.diff(llm) == []  # nothing new


def test_counters_a_view_redraws_by():
    """``applied`` moves with every batch and clear (a view's redraw key); ``evicted`` counts
    BlockRemoved of held hashes only (a clear and an unknown hash are no evictions)."""
    m = PrefixCacheModel()
    m.apply(EventBatch(0.0, (stored([1, 2], None),)))
    m.apply(EventBatch(1.0, ()))  # an empty batch: nothing changed, still a new sample
    m.apply(EventBatch(2.0, (BlockRemoved((2, 99)),)))
    assert (m.applied, m.evicted, m.removed, m.unknown_removed) == (3, 1, 1, 1)
    m.clear(3.0)
    assert (m.applied, m.evicted, m.removed, m.clears) == (4, 1, 2, 1)
