"""prepare_inputs: a ScheduledBatch -> the flat arrays of one forward, checked entry by entry.

Block size 4 throughout, so every slot can be worked out by hand: position p of a sequence lives
in slot ``block_table[p // 4] * 4 + p % 4``.
"""

from __future__ import annotations

import numpy as np

from nanovllm.engine.core.batch import ScheduledBatch
from nanovllm.engine.core.sequence import Sequence
from nanovllm.engine.runner.inputs import prepare_inputs, slot_mapping
from nanovllm.engine.runner.memory import warmup_inputs
from nanovllm.sampling_params import SamplingParams

BS = 4


def seq(i: int, tokens: list[int], blocks: list[int], computed: int = 0, **params) -> Sequence:
    s = Sequence(i, tokens, SamplingParams(**params))
    s.block_table, s.num_computed_tokens = list(blocks), computed
    return s


def batch(*rows: tuple[Sequence, int, bool]) -> ScheduledBatch:
    b = ScheduledBatch(step=0)
    for s, n, decode in rows:
        b.add(s, n, decode)
    return b


def ints(a: np.ndarray) -> list:
    return a.tolist()


def test_a_whole_prefill():
    a = seq(0, [10, 11, 12, 13, 14, 15], blocks=[7, 2])
    x = prepare_inputs(batch((a, 6, False)), BS)
    assert ints(x.input_ids) == [10, 11, 12, 13, 14, 15]
    assert ints(x.positions) == [0, 1, 2, 3, 4, 5]
    assert ints(x.slot_mapping) == [28, 29, 30, 31, 8, 9]  # block 7: 28..31, block 2: 8..
    assert ints(x.cu_seqlens_q) == [0, 6] and ints(x.seq_lens) == [6]
    assert ints(x.block_tables) == [[7, 2]]
    assert ints(x.logits_indices) == [5]  # the prompt's last token samples


def test_a_chunk_then_the_rest_of_the_prompt():
    tokens = list(range(100, 109))  # 9 tokens over blocks 3, 5, 1
    first = prepare_inputs(batch((seq(0, tokens, [3, 5, 1]), 5, False)), BS)
    assert ints(first.positions) == [0, 1, 2, 3, 4]
    assert ints(first.slot_mapping) == [12, 13, 14, 15, 20]
    assert ints(first.logits_indices) == [] and first.sampling.temperatures == []  # no sampling
    rest = prepare_inputs(batch((seq(0, tokens, [3, 5, 1], computed=5), 4, False)), BS)
    assert ints(rest.input_ids) == [105, 106, 107, 108]
    assert ints(rest.positions) == [5, 6, 7, 8]
    assert ints(rest.slot_mapping) == [21, 22, 23, 4]
    assert ints(rest.seq_lens) == [9] and ints(rest.logits_indices) == [3]


def test_decodes_and_a_prefill_chunk_share_one_batch():
    a = seq(0, [1, 2, 3, 4, 5, 6], blocks=[0, 4], computed=5)  # decodes position 5
    b = seq(1, [7, 8, 9], blocks=[6], computed=2)  # decodes position 2
    c = seq(2, [20, 21, 22, 23, 24], blocks=[2, 3])  # a chunk of 3 of 5 prompt tokens
    x = prepare_inputs(batch((a, 1, True), (b, 1, True), (c, 3, False)), BS)
    assert ints(x.input_ids) == [6, 9, 20, 21, 22]
    assert ints(x.positions) == [5, 2, 0, 1, 2]
    assert ints(x.slot_mapping) == [17, 26, 8, 9, 10]
    assert ints(x.cu_seqlens_q) == [0, 1, 2, 5] and ints(x.seq_lens) == [6, 3, 3]
    assert ints(x.block_tables) == [[0, 4], [6, 0], [2, 3]]  # padded with 0, never read
    assert ints(x.logits_indices) == [0, 1]  # the chunk does not reach its end


def test_a_one_token_chunk_beside_decodes_reads_its_own_token():
    """One token per row, but c's is a prompt chunk (a budget remainder of 1): its input is the
    token at its position, not the sequence's last one."""
    a = seq(0, [1, 2, 3, 4, 5, 6], blocks=[0, 4], computed=5)
    c = seq(2, [20, 21, 22, 23, 24], blocks=[2, 3])
    x = prepare_inputs(batch((a, 1, True), (c, 1, False)), BS)
    assert ints(x.input_ids) == [6, 20]
    assert ints(x.logits_indices) == [0]


def test_pending_tokens_stay_placeholders_for_the_runner():
    """With overlap scheduling a decode's input may be a placeholder -(k + 1) (sample row k of
    the step in flight): prepare_inputs copies it as it is; the runner fills it on the device."""
    a = seq(0, [1, 2, 3, -2], blocks=[0], computed=3)
    b = seq(1, [7, 8, -1], blocks=[6], computed=2)
    x = prepare_inputs(batch((a, 1, True), (b, 1, True)), BS)
    assert ints(x.input_ids) == [-2, -1]


def test_sampling_rows_follow_the_rows_that_reach_their_end():
    a = seq(0, [1, 2, 3], blocks=[0], computed=2, temperature=0.5, top_k=3, seed=7)
    b = seq(1, [4, 5, 6, 7, 8], blocks=[1, 2])  # chunk of 2: no sample
    c = seq(2, [9], blocks=[3], temperature=0.0, logprobs=2)
    c_batch = batch((a, 1, True), (b, 2, False), (c, 1, False))
    assert c_batch.sample_rows == [0, 2]
    s = prepare_inputs(c_batch, BS).sampling
    assert s.temperatures == [0.5, 0.0] and s.top_ks == [3, None] and s.seeds == [7, None]
    assert s.num_logprobs == [None, 2] and s.positions == [0, 0]


def test_the_warm_up_uses_the_same_slot_rule():
    class Cfg:
        max_model_len, max_num_seqs, kvcache_block_size = 6, 8, BS

    x = warmup_inputs(Cfg, num_tokens=12)  # two sequences of 6 tokens, 2 blocks each
    assert ints(x.block_tables) == [[0, 1], [2, 3]]
    assert ints(x.positions) == [0, 1, 2, 3, 4, 5] * 2
    assert ints(x.slot_mapping) == [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]
    assert ints(x.logits_indices) == [5, 11]


def test_slot_mapping_by_hand():
    tables = np.array([[5, 1], [2, 0]], dtype=np.int32)
    rows, positions = np.array([0, 0, 1]), np.array([3, 4, 1])
    assert ints(slot_mapping(tables, rows, positions, BS)) == [23, 4, 9]
