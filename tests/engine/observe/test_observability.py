"""Observability: exact events and step records for a scripted workload, DataFrames that agree
with the engine's counters, snapshots, and error boundaries that roll a failed step back."""

from __future__ import annotations

import pytest
import torch

from nanovllm import LLM, ObserverError, SamplingParams, StepError
from nanovllm.engine.observe.recorder import Recorder
from nanovllm.engine.observe.snapshot import BLOCK_CACHED, BLOCK_FREE, BLOCK_SHARED, BLOCK_USED

W, R, P, F = "WAITING", "RUNNING", "PREEMPTED", "FINISHED"
PROMPT_A = list(range(100, 116))  # exactly one block of 16


def scripted(tiny_model):
    """3 blocks of 16. A (16 tokens) and B (A + 1 token) prefill together and fill the cache;
    A's first decode needs a block, so B is preempted; B comes back with A's block as a prefix
    hit."""
    llm = LLM(tiny_model, kvcache_block_size=16, num_kvcache_blocks=3, max_model_len=48)
    rec = Recorder().attach(llm)
    a = llm.add_request(PROMPT_A, SamplingParams(temperature=0, max_tokens=20, ignore_eos=True))
    b = llm.add_request(
        PROMPT_A + [7], SamplingParams(temperature=0, max_tokens=4, ignore_eos=True)
    )
    records = []
    while llm.has_unfinished():
        records.append(llm.step())
    return llm, rec, records, a, b


def test_scripted_workload_gives_exactly_the_expected_events_and_records(tiny_model):
    llm, rec, records, a, b = scripted(tiny_model)
    events = [
        (e.step, e.seq_id, e.before.value if e.before else None, e.after.value, e.reason)
        for r in records
        for e in r.events
    ]
    assert events == [
        (0, a, None, W, "added"),
        (0, b, None, W, "added"),
        (0, a, W, R, "scheduled"),
        (0, b, W, R, "scheduled"),
        (1, b, R, P, "out of KV blocks"),
        (2, b, P, R, "resumed"),
        (4, b, R, F, "length"),
        (19, a, R, F, "length"),
    ]
    sched = [[(e.seq_id, e.phase, e.num_tokens, e.start) for e in r.scheduled] for r in records[:5]]
    assert sched == [
        [(a, "prefill", 16, 0), (b, "prefill", 17, 0)],
        [(a, "decode", 1, 16)],
        [(a, "decode", 1, 17), (b, "prefill", 2, 16)],  # B recomputes only past the cached block
        [(a, "decode", 1, 18), (b, "decode", 1, 18)],
        [(a, "decode", 1, 19), (b, "decode", 1, 19)],
    ]
    assert [r.preempted_ids for r in records[:3]] == [(), (b,), ()]
    assert [r.admitted_ids for r in records[:3]] == [(a, b), (), (b,)]
    assert [r.prefix_hit_tokens for r in records[:3]] == [0, 0, 16]
    assert [(r.kv_blocks_used, r.kv_blocks_free) for r in records[:3]] == [(3, 0), (2, 1), (3, 0)]
    assert records[4].finished_ids == (b,) and records[19].finished_ids == (a,)
    assert len(records) == 20 and records[0].added_ids == (a, b)
    llm.close()


def test_dataframes_agree_with_the_engine_counters(tiny_model):
    llm, rec, records, a, b = scripted(tiny_model)
    m = llm.get_metrics()
    steps = rec.steps
    assert len(steps) == m["steps"] == 20
    assert steps.prefill_tokens.sum() == m["prefill_tokens"] == 16 + 17 + 2
    assert steps.decode_tokens.sum() == m["decode_tokens"]
    assert steps.preempted.sum() == m["preemptions"] == 1
    assert steps.prefix_hit_tokens.sum() == m["prefix_hit_tokens"] == 16
    seqs = rec.sequences.set_index("seq_id")
    assert seqs.loc[a, "num_generated"] == 20 and seqs.loc[b, "num_generated"] == 4
    assert seqs.loc[b, "num_preemptions"] == 1 and seqs.loc[a, "num_preemptions"] == 0
    assert (seqs.ttft > 0).all() and (seqs.itl_mean > 0).all()
    assert m["successful_requests"] == 2 and m["failed_requests"] == 0
    assert len(rec.events) == 8
    assert set(rec.scheduled.columns) >= {"step", "seq_id", "phase"}
    llm.close()


def test_snapshot_states_owners_and_integrity(tiny_model):
    with LLM(tiny_model, kvcache_block_size=16, num_kvcache_blocks=8, max_model_len=64) as llm:
        done = llm.add_request(PROMPT_A + [1, 2], SamplingParams(temperature=0, max_tokens=1))
        llm.step()  # finishes: its full first block stays cached
        snap = llm.snapshot()
        assert snap.count(BLOCK_CACHED) == 1 and snap.count(BLOCK_FREE) == 7
        x = llm.add_request(PROMPT_A + [3, 4], SamplingParams(temperature=0, max_tokens=5))
        y = llm.add_request(PROMPT_A + [5, 6], SamplingParams(temperature=0, max_tokens=5))
        llm.step()
        snap = llm.snapshot(check=True)
        shared = int(snap.block_state.tolist().index(BLOCK_SHARED))
        assert set(snap.owners[shared]) == {x, y} and snap.ref_count[shared] == 2
        assert snap.count(BLOCK_USED) == 2 and snap.problems == ()
        assert snap.token_range[shared] == (0, 16)
        by_id = {s.seq_id: s for s in snap.sequences}
        assert by_id[x].num_cached_tokens == 16 and by_id[done].status == "FINISHED"
        assert "EngineSnapshot" in snap._repr_html_()


def test_html_reprs_render(tiny_model):
    with LLM(tiny_model, kvcache_block_size=16) as llm:
        llm.add_request([1, 2, 3], SamplingParams(max_tokens=2))
        record = llm.step()
        seq = next(iter(llm.sequences.values()))
        for obj in (record, seq, llm.block_manager, llm.snapshot()):
            html = obj._repr_html_()
            assert html.startswith("<") and "<table" in html


def baseline_outputs(tiny_model, prompts, **config):
    with LLM(tiny_model, kvcache_block_size=16, **config) as llm:
        return [o["token_ids"] for o in llm.generate(prompts, GREEDY, use_tqdm=False)]


GREEDY = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)
PROMPTS = [[5, 6, 7, 8] * 5, [9, 10, 11], list(range(20, 60))]


def inject(llm, fail_when):
    """Make the executor raise whenever ``fail_when(step_inputs)`` is true."""
    real_launch = llm.executor.launch

    def launch(inputs):
        if fail_when(inputs):
            raise RuntimeError("injected kernel failure")
        return real_launch(inputs)

    llm.executor.launch = launch


def test_failed_step_rolls_back_and_the_requests_finish_unchanged(tiny_model):
    expected = baseline_outputs(tiny_model, PROMPTS)
    with LLM(tiny_model, kvcache_block_size=16) as llm:
        ids = [llm.add_request(p, GREEDY) for p in PROMPTS]
        calls = {"n": 0}

        def third_call(_):
            calls["n"] += 1
            return calls["n"] == 3

        inject(llm, third_call)
        failures = []
        while llm.has_unfinished():
            try:
                llm.step()
            except StepError as e:
                failures.append(e)
                assert llm.check_integrity() == []
        [err] = failures
        assert err.step == 2 and sorted(err.request_ids) == sorted(ids) and err.phase == "decode"
        assert isinstance(err.__cause__, RuntimeError)
        assert [llm.get_output(i)["token_ids"] for i in ids] == expected
        assert llm.get_metrics()["failed_steps"] == 1


def test_generate_retries_a_transient_failure(tiny_model):
    expected = baseline_outputs(tiny_model, PROMPTS)
    with LLM(tiny_model, kvcache_block_size=16) as llm:
        calls = {"n": 0}

        def fifth_call(_):
            calls["n"] += 1
            return calls["n"] == 5

        inject(llm, fifth_call)
        outs = llm.generate(PROMPTS, GREEDY, use_tqdm=False)
        assert [o["token_ids"] for o in outs] == expected


def test_a_request_whose_steps_keep_failing_fails_alone(tiny_model):
    expected = baseline_outputs(tiny_model, PROMPTS, max_num_seqs=1)
    with LLM(tiny_model, kvcache_block_size=16, max_num_seqs=1) as llm:
        inject(llm, lambda inputs: 9 in inputs.input_ids.tolist())  # only PROMPTS[1] holds 9
        outs = llm.generate(PROMPTS, GREEDY, use_tqdm=False)
        assert outs[1]["finish_reason"] == "error" and "injected" in outs[1]["error"]
        assert [outs[0]["token_ids"], outs[2]["token_ids"]] == [expected[0], expected[2]]
        assert llm.check_integrity() == [] and llm.get_metrics()["failed_requests"] == 1


def test_non_finite_logits_fail_only_that_request(tiny_model):
    expected = baseline_outputs(tiny_model, PROMPTS)
    with LLM(tiny_model, kvcache_block_size=16) as llm:
        model = llm.executor.model
        real = model.compute_logits
        ids = [llm.add_request(p, GREEDY) for p in PROMPTS]
        target = ids[1]

        def poisoned(hidden):
            logits = real(hidden)
            rows = [i for i, s in enumerate(llm.scheduler.running) if s.seq_id == target]
            if rows and logits.size(0) == len(llm.scheduler.running):
                logits[rows[0]] = torch.nan
            return logits

        model.compute_logits = poisoned
        records = []
        while llm.has_unfinished():
            records.append(llm.step())
        outs = [llm.get_output(i) for i in ids]
        assert outs[1]["finish_reason"] == "error" and "non-finite" in outs[1]["error"]
        # the token the failed row drew is no token of the request: the records do not show it
        assert [t for r in records for s, t in r.new_tokens if s == target] == outs[1]["token_ids"]
        assert [outs[0]["token_ids"], outs[2]["token_ids"]] == [expected[0], expected[2]]
        assert (
            llm.check_integrity() == []
            and llm.block_manager.num_free_blocks == llm.block_manager.num_blocks
        )


def test_records_rebuild_the_outputs_and_times_are_the_engines_own(tiny_model):
    """The tokens in the StepRecords are the outputs' tokens; the first-token and finish times are
    written by the scheduler (no observer), so an observer that raises changes none of them."""
    with LLM(tiny_model, kvcache_block_size=16) as llm:
        records = []
        llm.subscribe(records.append)

        def bad(_):
            raise ValueError("observer bug")

        llm.subscribe(bad)
        ids = [llm.add_request(p, GREEDY) for p in PROMPTS]
        while llm.has_unfinished():
            with pytest.raises(ValueError, match="observer bug"):  # raised once its step is done
                llm.step()
        llm.abort(ids[0])  # finished already: nothing changes
        rebuilt = {i: [] for i in ids}
        for r in records:
            for seq_id, token in r.new_tokens:
                rebuilt[seq_id].append(token)
        outs = {i: llm.get_output(i) for i in ids}
        assert rebuilt == {i: o.outputs[0].token_ids for i, o in outs.items()}
        finishes = {e.seq_id: e.time for r in records for e in r.events if e.after.value == F}
        firsts = {i: next(r.time for r in records if i in dict(r.new_tokens)) for i in ids}
        for i, o in outs.items():
            m = o.metrics
            assert m.finished_time == finishes[i]
            assert (
                m.arrival_time < m.first_token_time <= firsts[i]
                and m.first_token_time < m.finished_time
            )


def test_abort_and_failure_times_come_from_their_events(tiny_model):
    with LLM(tiny_model, kvcache_block_size=16) as llm:
        a, b = (llm.add_request(p, GREEDY) for p in PROMPTS[:2])
        llm.step()
        llm.abort(a)
        llm.fail_request(b, "given up")
        record = llm.flush_events()
        times = {e.seq_id: e.time for e in record.events}
        assert [e.reason for e in record.events] == ["abort", "error"]
        assert llm.get_output(a).metrics.finished_time == times[a]
        assert llm.get_output(b).metrics.finished_time == times[b]


def test_an_observer_exception_propagates_once_its_requests_are_done(tiny_model):
    """An observer is the caller's code: its exception is not swallowed nor retried, and it costs
    no output: generate() runs its requests to their end, every observer seeing every step, then
    raises ObserverError with the outputs (more cases: tests/engine/test_observers.py)."""
    with LLM(tiny_model, kvcache_block_size=16) as llm:
        seen = []

        def bad(record):
            if record.step == 2:
                raise ValueError("observer bug")

        llm.subscribe(bad)
        llm.subscribe(lambda record: seen.append(record.step))  # subscribed after the bad one
        with pytest.raises(ObserverError, match="observer bug") as info:
            llm.generate([[1, 2, 3]], GREEDY, use_tqdm=False)
        assert isinstance(info.value.__cause__, ValueError) and info.value.steps == [2]
        assert seen == list(range(10))  # the later observer saw every step, 2 included
        assert len(info.value.outputs[0]["token_ids"]) == 10
        assert not llm.has_unfinished() and llm.check_integrity() == []
        out = llm.generate([[1, 2, 3]], GREEDY, use_tqdm=False)
        assert out[0]["token_ids"] == info.value.outputs[0]["token_ids"]


def test_recorder_history_is_bounded(tiny_model):
    with LLM(tiny_model, kvcache_block_size=16) as llm:
        rec = Recorder(max_steps=5).attach(llm)
        llm.generate([[1, 2, 3]], GREEDY, use_tqdm=False)
        assert len(rec.steps) == 5 and rec.steps.step.tolist() == list(range(5, 10))
        rec.detach()
        llm.generate([[1, 2]], GREEDY, use_tqdm=False)
        assert len(rec.records) == 5
