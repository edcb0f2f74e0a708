"""BlockManager: exact block ids, prefix hits, eviction order, and random operation sequences."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nanovllm.engine.core.block_manager import BlockManager
from nanovllm.engine.core.sequence import Sequence
from nanovllm.sampling_params import SamplingParams

BS = 4


def seq(i: int, tokens: list[int]) -> Sequence:
    return Sequence(i, tokens, SamplingParams())


def run_prefill(bm: BlockManager, s: Sequence) -> None:
    """Admit ``s`` with all its tokens and mark them computed, as one whole prefill step would."""
    hits = bm.match_prefix(s)
    assert bm.can_admit(hits, s.num_tokens)
    bm.admit(s, hits, s.num_tokens)
    s.num_computed_tokens = s.num_tokens
    bm.commit(s)


def test_fresh_allocation_takes_blocks_in_order():
    bm = BlockManager(8, BS)
    a = seq(0, list(range(10)))
    run_prefill(bm, a)
    assert a.block_table == [0, 1, 2]
    assert bm.num_free_blocks == 5
    assert bm.check_integrity([a]) == []


def test_prefix_hit_shares_full_blocks_and_recomputes_the_rest():
    bm = BlockManager(8, BS)
    a = seq(0, list(range(10)))  # blocks [0..3] [4..7] full, [8, 9] partial
    run_prefill(bm, a)
    b = seq(1, list(range(8)) + [99, 98, 97])
    hits = bm.match_prefix(b)
    assert hits == [0, 1]
    bm.admit(b, hits, b.num_tokens)
    assert b.block_table == [0, 1, 3]
    assert b.num_computed_tokens == b.num_cached_tokens == 8
    assert bm.blocks[0].ref_count == bm.blocks[1].ref_count == 2
    assert bm.check_integrity([a, b]) == []


def test_last_token_is_always_recomputed():
    bm = BlockManager(8, BS)
    run_prefill(bm, seq(0, list(range(8))))
    same = seq(1, list(range(8)))
    assert bm.match_prefix(same) == [0]  # not [0, 1]: the last token needs logits


def test_freed_blocks_stay_cached_until_evicted_tail_first():
    bm = BlockManager(4, BS)
    a = seq(0, list(range(12)))  # 3 blocks, all hashed
    run_prefill(bm, a)
    bm.free_seq(a)
    assert bm.num_free_blocks == 4 and bm.num_cached_free_blocks == 3
    # Free order: block 3 (never used), then the tail of a first: 2, 1, 0.
    assert list(bm.free) == [3, 2, 1, 0]
    b = seq(1, [50, 51, 52, 53, 54])  # needs 2 fresh blocks: evicts 3, then 2
    run_prefill(bm, b)
    assert b.block_table == [3, 2]
    c = seq(2, list(range(8)) + [7])  # a's first two blocks survived
    assert bm.match_prefix(c) == [0, 1]


def test_hash_collision_is_caught_by_token_comparison():
    bm = BlockManager(8, BS)
    a = seq(0, [1, 2, 3, 4, 5])
    run_prefill(bm, a)
    block = bm.blocks[a.block_table[0]]
    block.token_ids = (9, 9, 9, 9)  # pretend the stored tokens differ though the hash matches
    assert bm.match_prefix(seq(1, [1, 2, 3, 4, 5])) == []


def test_prefix_caching_off_never_hits():
    bm = BlockManager(8, BS, enable_prefix_caching=False)
    run_prefill(bm, seq(0, list(range(9))))
    assert bm.match_prefix(seq(1, list(range(9)))) == []
    assert bm.hash_to_block == {}


def test_grow_refuses_without_changing_anything():
    bm = BlockManager(2, BS)
    a = seq(0, list(range(8)))
    run_prefill(bm, a)
    assert not bm.grow(a, 9)
    assert a.block_table == [0, 1]


def test_check_integrity_reports_a_corrupted_ref_count():
    bm = BlockManager(4, BS)
    a = seq(0, list(range(6)))
    run_prefill(bm, a)
    bm.blocks[a.block_table[0]].ref_count += 1
    problems = bm.check_integrity([a])
    assert any("ref_count 2" in p for p in problems)


ops = st.lists(
    st.tuples(st.sampled_from(["add", "grow", "free"]), st.integers(0, 7), st.integers(1, 20)),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops, st.booleans())
def test_random_operations_keep_integrity(operations, caching):
    bm = BlockManager(12, BS, enable_prefix_caching=caching)
    live: dict[int, Sequence] = {}
    next_id = 0
    for op, k, n in operations:
        if op == "add":
            tokens = [k % 3] * n  # few distinct prompts, so prefixes are shared often
            s = seq(next_id, tokens)
            next_id += 1
            hits = bm.match_prefix(s)
            if bm.can_admit(hits, s.num_tokens):
                bm.admit(s, hits, s.num_tokens)
                s.num_computed_tokens = s.num_tokens
                bm.commit(s)
                live[s.seq_id] = s
        elif op == "grow" and live:
            s = list(live.values())[k % len(live)]
            new = s.num_tokens + n
            if bm.grow(s, new):
                s.token_ids += [k] * n
                s.num_computed_tokens = new
                bm.commit(s)
        elif op == "free" and live:
            s = live.pop(list(live)[k % len(live)])
            bm.free_seq(s)
        assert bm.check_integrity(live.values()) == []
    for s in live.values():
        bm.free_seq(s)
    assert bm.num_free_blocks == bm.num_blocks
    assert bm.check_integrity([]) == []


def test_reset_prefix_cache_forgets_free_blocks_only():
    bm = BlockManager(8, BS)
    done = seq(0, list(range(9)))
    run_prefill(bm, done)
    bm.free_seq(done)
    live = seq(1, list(range(100, 109)))
    run_prefill(bm, live)
    assert bm.num_cached_free_blocks == 2
    assert bm.reset_prefix_cache() == 2
    assert bm.num_cached_free_blocks == 0 and bm.match_prefix(seq(2, list(range(9)))) == []
    assert bm.match_prefix(seq(3, list(range(100, 109)))) == live.block_table[:2]  # in use: kept
    assert bm.check_integrity([live]) == []
