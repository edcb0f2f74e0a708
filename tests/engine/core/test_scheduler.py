"""Scheduler: token budget, decode-first mixing, chunked prefill, preemption, abort. No model."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nanovllm.engine.core.batch import SamplerOutput, ScheduledBatch, StepOutcome
from nanovllm.engine.core.block_manager import BlockManager
from nanovllm.engine.core.scheduler import Scheduler
from nanovllm.engine.core.sequence import FinishReason, Sequence, SequenceStatus
from nanovllm.sampling_params import SamplingParams

BS = 4


def make(num_blocks=16, budget=64, max_seqs=8, max_len=64, caching=True) -> Scheduler:
    return Scheduler(
        BlockManager(num_blocks, BS, caching),
        max_num_seqs=max_seqs,
        max_num_batched_tokens=budget,
        max_model_len=max_len,
        eos_token_ids=(0,),
    )


def add(s: Scheduler, i: int, n: int, max_tokens: int = 8, first_token: int = 1) -> Sequence:
    seq = Sequence(
        i, list(range(first_token, first_token + n)), SamplingParams(max_tokens=max_tokens)
    )
    s.add(seq)
    return seq


def step(s: Scheduler, token: int = 5) -> tuple[ScheduledBatch, StepOutcome]:
    batch = s.schedule()
    s.advance(batch)
    outcome = s.postprocess(batch, SamplerOutput.of_tokens([token] * len(batch.sample_rows)))
    assert s.check_integrity() == []
    return batch, outcome


def test_prefill_then_decode():
    s = make()
    a = add(s, 0, 6)
    batch, _ = step(s)
    assert (
        batch.num_new_tokens == [6] and batch.is_decode == [False] and batch.reaches_end == [True]
    )
    batch, _ = step(s)
    assert batch.num_new_tokens == [1] and batch.is_decode == [True]
    assert a.token_ids[-2:] == [5, 5]


def test_budget_chunks_a_long_prompt():
    s = make(budget=4)
    a = add(s, 0, 10)
    sizes = []
    for _ in range(3):
        batch, _ = step(s)
        sizes.append(batch.num_new_tokens[0])
        assert batch.reaches_end == [a.num_computed_tokens == 10]
    assert sizes == [4, 4, 2]
    assert a.num_completion_tokens == 1


def test_decodes_go_first_and_share_the_step_with_a_prefill_chunk():
    s = make(budget=5)
    add(s, 0, 3)
    step(s)  # a prefilled, now decoding
    b = add(s, 1, 9)
    batch, _ = step(s)
    assert [q.seq_id for q in batch.seqs] == [0, 1]
    assert batch.num_new_tokens == [1, 4] and batch.is_decode == [True, False]
    assert batch.phase == "mixed"
    batch, _ = step(s)
    assert batch.num_new_tokens == [1, 4]
    batch, _ = step(s)
    assert batch.num_new_tokens == [1, 1] and batch.reaches_end == [True, True]
    assert b.num_completion_tokens == 1


def test_preemption_frees_the_latest_sequence_and_requeues_it_first():
    s = make(num_blocks=4, max_len=16)
    add(s, 0, 4, max_tokens=12, first_token=10)
    add(s, 1, 4, max_tokens=12, first_token=30)
    c = add(s, 2, 4, max_tokens=12, first_token=50)
    step(s)  # all three prefilled: 3 blocks used, 1 free
    batch, _ = step(s)  # a's decode takes the last block; b then needs one: c is preempted
    assert batch.preempted_ids == [2]
    assert [q.seq_id for q in batch.seqs] == [0, 1]
    assert c.status is SequenceStatus.PREEMPTED and c.block_table == [] and s.waiting[0] is c
    assert c.num_preemptions == 1
    events = [
        (e.seq_id, e.before, e.after) for e in batch.events if e.after is SequenceStatus.PREEMPTED
    ]
    assert events == [(2, SequenceStatus.RUNNING, SequenceStatus.PREEMPTED)]


def test_the_sequence_itself_is_preempted_when_nothing_later_can_go():
    s = make(num_blocks=2, max_len=8)
    a = add(s, 0, 4, max_tokens=4)
    add(s, 1, 4, max_tokens=4, first_token=20)
    step(s)
    batch, _ = step(s)  # a needs a 3rd block: b (later) goes
    assert batch.preempted_ids == [1] and a.status is SequenceStatus.RUNNING


def test_no_admission_in_a_step_that_preempted():
    s = make(num_blocks=3, max_len=12)
    add(s, 0, 4, max_tokens=8)
    add(s, 1, 4, max_tokens=8, first_token=20)
    step(s)
    add(s, 2, 1, first_token=40)
    batch, _ = step(s)  # 0 grows into the last free block; 1 needs one too and is preempted
    assert batch.preempted_ids == [1] and batch.admitted_ids == []


def test_max_num_seqs_limits_admission():
    s = make(max_seqs=2)
    for i in range(3):
        add(s, i, 2, first_token=10 * i + 1)
    batch, _ = step(s)
    assert batch.admitted_ids == [0, 1] and len(s.waiting) == 1


def test_finish_on_eos_stop_token_and_length():
    s = make()
    a = add(s, 0, 2, max_tokens=8)
    _, outcome = step(s, token=0)  # EOS
    assert outcome.finished_ids == (0,) and a.finish_reason is FinishReason.STOP
    assert a.block_table == []
    b = add(s, 1, 2, max_tokens=2)
    step(s)
    _, outcome = step(s)
    assert outcome.finished_ids == (1,) and b.finish_reason is FinishReason.LENGTH


def test_abort_frees_blocks_and_records_the_event():
    s = make()
    a = add(s, 0, 6)
    step(s)
    s.abort(a)
    assert a.finish_reason is FinishReason.ABORT and s.bm.num_free_blocks == 16
    last = s.take_events()[-1]
    assert last.after is SequenceStatus.FINISHED and last.reason == "abort"
    assert not s.has_unfinished()


def test_postprocess_returns_the_step_outcome():
    """One tuple of new tokens per batch row (none for a chunk that stops short), the finishes
    with their completions, and the events: the schedule's in the batch, the rest in the outcome."""
    s = make(budget=8)
    a = add(s, 0, 3, max_tokens=1)
    add(s, 1, 9)
    batch = s.schedule()  # a's prompt (3 tokens) and the first 5 of b's 9
    s.advance(batch)
    outcome = s.postprocess(batch, SamplerOutput.of_tokens([42]))
    assert batch.num_new_tokens == [3, 5] and outcome.new_token_ids == ((42,), ())
    assert outcome.finished_ids == (0,) and outcome.finished_outputs == ((0, [42]),)
    assert [(e.seq_id, e.reason) for e in batch.events] == [
        (0, "added"),
        (1, "added"),
        (0, "scheduled"),
        (1, "scheduled"),
    ]
    assert [(e.seq_id, e.reason) for e in outcome.events] == [(0, "length")]
    assert (outcome.num_running, outcome.num_waiting) == (1, 0) and s.take_events() == ()
    # the times are written once, here: a's first token at the outcome, its finish at the event
    assert a.first_token_time == outcome.time and a.finish_time == outcome.events[0].time


def test_abort_writes_the_finish_time_with_its_event():
    s = make()
    a = add(s, 0, 6)
    step(s)
    s.abort(a)
    [event] = s.take_events()
    assert event.reason == "abort" and a.finish_time == event.time


def test_a_step_that_sampled_nothing_only_takes_the_events():
    s = make()
    a = add(s, 0, 6)
    batch = s.schedule()  # not advanced: the engine abandons a step whose launch raised
    s.abort(a)
    outcome = s.postprocess(batch, None)
    assert outcome.new_token_ids == ((),) and outcome.finished_ids == ()
    assert [e.reason for e in outcome.events] == ["abort"]


def test_prefix_hit_counts_in_the_batch():
    s = make()
    add(s, 0, 9)
    step(s)
    add(s, 1, 9)  # same 9 tokens: two full blocks hit, the 9th token recomputed
    batch, _ = step(s)
    assert batch.prefix_hit_tokens == 8
    i = [q.seq_id for q in batch.seqs].index(1)
    assert batch.num_new_tokens[i] == 1 and batch.starts[i] == 8


ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "step", "step", "abort"]), st.integers(1, 30), st.integers(1, 12)
    ),
    max_size=50,
)


@settings(max_examples=120, deadline=None)
@given(ops, st.integers(3, 40), st.integers(6, 16), st.booleans())
def test_random_workloads_keep_integrity_and_finish(operations, budget, num_blocks, caching):
    s = make(num_blocks=num_blocks, budget=budget, max_seqs=4, max_len=24, caching=caching)
    seqs: list[Sequence] = []
    for op, a, b in operations:
        if op == "add":
            n = min(a, 24 - b)
            if n >= 1:
                seqs.append(add(s, len(seqs), n, max_tokens=b, first_token=1 + a % 3))
        elif op == "abort" and seqs:
            victim = seqs[a % len(seqs)]
            if not victim.is_finished:
                s.abort(victim)
        elif s.has_unfinished():
            step(s, token=a)  # token ids >= 1: never EOS
    for _ in range(2000):
        if not s.has_unfinished():
            break
        step(s, token=7)
    assert not s.has_unfinished(), "the scheduler stalled"
    assert s.bm.num_free_blocks == s.bm.num_blocks
    for q in seqs:
        assert q.is_finished
        if q.finish_reason is FinishReason.LENGTH:
            assert q.num_completion_tokens == q.params.max_tokens
