"""The scheduler's side of speculative decoding, with lists of ints and a fixed proposer: a
draft costs budget and lookahead blocks, verification appends the accepted tokens, the rejected
drafts' slots are rolled back, and finishes are decided token by token."""

from __future__ import annotations

from nanovllm.engine.core.batch import SamplerOutput
from nanovllm.engine.core.block_manager import BlockManager
from nanovllm.engine.core.drafts import Drafter, rejected_slots
from nanovllm.engine.core.scheduler import Scheduler
from nanovllm.engine.core.sequence import FinishReason, Sequence
from nanovllm.sampling_params import SamplingParams

BS = 4


class Fixed:
    """A proposer that always guesses ``draft`` (cut to k)."""

    def __init__(self, draft):
        self.draft = list(draft)

    def propose(self, token_ids, k):
        return self.draft[:k]


def make(draft=(10, 11, 12), k=3, num_blocks=16, budget=64) -> Scheduler:
    return Scheduler(
        BlockManager(num_blocks, BS),
        max_num_seqs=8,
        max_num_batched_tokens=budget,
        max_model_len=64,
        eos_token_ids=(0,),
        drafter=Drafter(Fixed(draft), k),
    )


def add(s, i, n, **params) -> Sequence:
    params.setdefault("max_tokens", 20)
    seq = Sequence(i, list(range(1, n + 1)), SamplingParams(**params))
    s.add(seq)
    return seq


def step(s, targets_of=None, token=5):
    """One step; a drafted row's targets from ``targets_of(draft)``, others sample ``token``."""
    batch = s.schedule()
    s.advance(batch)
    rows = batch.sample_rows
    out = SamplerOutput.of_tokens([token] * len(rows))
    if batch.drafts:
        out.targets = [targets_of(batch.drafts[i]) if i in batch.drafts else (token,) for i in rows]
        out.token_ids = [t[0] for t in out.targets]
    outcome = s.postprocess(batch, out)
    assert s.check_integrity() == []
    return batch, outcome


def test_prefill_never_drafts_then_decode_drafts_with_lookahead():
    s = make()
    seq = add(s, 0, 6)  # 6 prompt tokens: 2 blocks
    batch, _ = step(s)
    assert not batch.drafts
    batch = s.schedule()  # decode: token 6 plus draft 10 11 12, positions 6..9
    assert batch.drafts == {0: (10, 11, 12)}
    assert batch.num_new_tokens == [4] and batch.is_decode == [True]
    assert batch.num_decode_tokens == 4 and batch.reaches_end == [True]
    assert len(seq.block_table) == 3  # lookahead: positions 8, 9 need a third block


def test_accepted_tokens_appended_and_rejected_slots_rolled_back():
    s = make()
    seq = add(s, 0, 6)
    step(s)  # prefill; seq = 1..6, 5
    table_before = None

    def targets(draft):  # accept 10, reject 11 (the target says 40)
        nonlocal table_before
        table_before = list(seq.block_table)
        return (10, 40, 41, 42)

    batch, outcome = step(s, targets)
    assert outcome.new_token_ids == ((10, 40),)
    assert outcome.num_accepted == (1,)
    # positions: 6 = the last token, 7 = 10 (accepted), 8 and 9 = rejected drafts
    assert outcome.rolled_back_slots == ((table_before[2] * BS + 0, table_before[2] * BS + 1),)
    assert seq.token_ids[6:] == [5, 10, 40]
    assert seq.num_computed_tokens == 8  # up to and including the accepted draft
    assert len(seq.block_table) == 3  # 9 tokens: the third block stays (it holds token 8)


def test_all_rejected_frees_the_lookahead_block():
    s = make(draft=(10, 11))
    seq = add(s, 0, 7)
    step(s)  # 8 tokens: exactly 2 blocks
    batch = s.schedule()
    assert len(seq.block_table) == 3  # lookahead block for positions 8, 9
    free_before = s.bm.num_free_blocks
    s.advance(batch)
    out = SamplerOutput.of_tokens([33])
    out.targets = [(33, 34, 35)]
    outcome = s.postprocess(batch, out)
    assert outcome.num_accepted == (0,) and outcome.new_token_ids == ((33,),)
    assert len(seq.block_table) == 3  # 9 tokens now: token 8 lives in the third block
    assert s.bm.num_free_blocks == free_before
    assert s.check_integrity() == []
    s2 = make(draft=(10, 11, 12, 13, 14), k=5)  # the same with a draft reaching a fourth block
    seq2 = add(s2, 0, 7)
    step(s2)
    batch = s2.schedule()
    assert len(seq2.block_table) == 4
    s2.advance(batch)
    out = SamplerOutput.of_tokens([33])
    out.targets = [(33, 1, 2, 3, 4, 5)]
    s2.postprocess(batch, out)
    assert len(seq2.block_table) == 3  # the fourth block went back
    assert s2.check_integrity() == []


def test_finish_inside_an_accepted_draft_stops_there():
    s = make(draft=(10, 0, 12))  # 0 is EOS
    seq = add(s, 0, 6)
    step(s)
    _, outcome = step(s, lambda d: (10, 0, 12, 13))
    assert outcome.new_token_ids == ((10, 0),)  # nothing after the EOS
    assert seq.finish_reason is FinishReason.STOP
    assert seq.completion_token_ids == [5, 10, 0]


def test_draft_cut_to_max_tokens_and_budget():
    s = make(draft=(10, 11, 12), budget=64)
    seq = add(s, 0, 6, max_tokens=3)  # 1 sampled by the prefill, 2 more allowed
    step(s)
    batch = s.schedule()
    assert batch.drafts == {0: (10,)}  # the decode's own token + 1 draft = 2 tokens
    s.advance(batch)
    out = SamplerOutput.of_tokens([10])
    out.targets = [(10, 11)]
    s.postprocess(batch, out)
    assert seq.finish_reason is FinishReason.LENGTH and seq.num_completion_tokens == 3
    s = make(draft=(10, 11, 12), budget=3)
    add(s, 0, 3)
    step(s)
    assert s.schedule().drafts == {0: (10, 11)}  # budget 3: own token + 2


def test_no_draft_with_logprobs_or_penalties():
    for params in ({"logprobs": 1}, {"presence_penalty": 0.5}):
        s = make()
        add(s, 0, 6, **params)
        step(s)
        assert s.schedule().drafts == {}


def test_no_free_block_no_draft_no_preemption():
    s = make(num_blocks=2)
    add(s, 0, 7)  # 2 blocks, full after its first token
    step(s)
    batch = s.schedule()
    assert batch.drafts == {} and batch.preempted_ids == []  # no room for lookahead: plain


def test_rejected_slots_positions():
    #  block table [3, 7], block size 4: position 5 -> slot 7 * 4 + 1
    assert rejected_slots([3, 7], 4, start=2, num_drafted=4, num_accepted=1) == (28, 29, 30)
    assert rejected_slots([3, 7], 4, start=2, num_drafted=2, num_accepted=2) == ()
