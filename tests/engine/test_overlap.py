"""Overlap scheduling (``LLMEngine.step_overlapped``, engine/step_loop.py): the same tokens
as stepping one step at a time, one StepRecord per step with that step's tokens, and nothing left
in flight.

On CPU the torch reference backend runs each launch to the end, but the data flow is the GPU's:
the next step is scheduled and launched before the step in flight is postprocessed, its sampled
tokens reach the next step's inputs as placeholders filled by the runner, and finishes are decided
one call later.
"""

from __future__ import annotations

import random

import pytest

from nanovllm import LLM, SamplingParams
from nanovllm.engine.core.sequence import is_pending
from nanovllm.errors import ConfigError

GREEDY = dict(temperature=0.0)


def engine(model: str, overlap: bool, **config) -> LLM:
    """float32 also on a GPU: in bfloat16 a batch of another shape may round a near tie of two
    logits the other way, and the comparison is of scheduling, not of rounding."""
    config.setdefault("kvcache_block_size", 16)
    config.setdefault("dtype", "float32")
    return LLM(model, overlap_scheduling=overlap, attention_backend="torch_ref", **config)


def prompts(vocab: int, n: int = 6, shared: int = 0, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    head = [rng.randrange(3, vocab) for _ in range(shared)]
    return [head + [rng.randrange(3, vocab) for _ in range(rng.randint(3, 40))] for _ in range(n)]


def generate_both(model: str, batch, params, **config):
    """Token ids per request and the StepRecords, overlap off then on."""
    results = []
    for overlap in (False, True):
        with engine(model, overlap, **config) as llm:
            records = []
            llm.subscribe(records.append)
            outs = llm.generate(batch, params, use_tqdm=False)
            assert llm.step_loop.in_flight is None
            results.append(([o.outputs[0].token_ids for o in outs], records, outs))
    return results


def vocab_of(model: str) -> int:
    import json
    from pathlib import Path

    return json.loads((Path(model) / "config.json").read_text())["vocab_size"]


def test_greedy_tokens_equal_with_overlap_on_and_off(tiny_model):
    batch = prompts(vocab_of(tiny_model), n=8)
    params = [SamplingParams(max_tokens=m, ignore_eos=True, **GREEDY) for m in (1, 2, 5, 9) * 2]
    (off, rec_off, _), (on, rec_on, _) = generate_both(tiny_model, batch, params)
    assert on == off
    assert [len(t) for t in on] == [p.max_tokens for p in params]
    # a length finish is known when the step is scheduled: the overlapped run wastes no step
    assert len(rec_on) == len(rec_off)


def test_stop_tokens_finish_the_same_and_cost_at_most_one_wasted_row(tiny_model):
    batch = prompts(vocab_of(tiny_model), n=6, seed=1)
    free = SamplingParams(max_tokens=24, ignore_eos=True, **GREEDY)
    (base, _, _), _ = generate_both(tiny_model, batch, free)
    stops = sorted({t for toks in base for t in toks[3:8]})[:4]  # tokens that stop some requests
    params = SamplingParams(max_tokens=24, stop_token_ids=stops, ignore_eos=True, **GREEDY)
    (off, rec_off, outs_off), (on, rec_on, outs_on) = generate_both(tiny_model, batch, params)
    assert on == off
    assert [o.outputs[0].finish_reason for o in outs_on] == [
        o.outputs[0].finish_reason for o in outs_off
    ]
    assert any(o.outputs[0].finish_reason == "stop" for o in outs_on)
    # every stop can cost one row in the step after it, never more: count rows without a token
    wasted = sum(
        1 for r in rec_on for i, end in enumerate(r.reaches_end) if end and r.tokens[i] is None
    )
    stopped = sum(o.outputs[0].finish_reason == "stop" for o in outs_on)
    assert wasted <= stopped
    assert sum(len(r.seq_ids) for r in rec_on) - wasted == sum(len(r.seq_ids) for r in rec_off)


def test_eos_and_stop_strings_and_n_samples_match(teaching_model):
    questions = ["what is two plus three ?", "what is seven times six ?", "name a red fruit ."]
    params = [
        SamplingParams(max_tokens=30, **GREEDY),
        SamplingParams(max_tokens=30, stop=["."], **GREEDY),
        SamplingParams(max_tokens=12, n=2, temperature=0.8, seed=7),
    ]
    (off, _, outs_off), (on, _, outs_on) = generate_both(
        teaching_model, questions, params, kvcache_block_size=16
    )
    assert [[c.token_ids for c in o.outputs] for o in outs_on] == [
        [c.token_ids for c in o.outputs] for o in outs_off
    ]
    assert [[c.text for c in o.outputs] for o in outs_on] == [
        [c.text for c in o.outputs] for o in outs_off
    ]
    assert any(o.outputs[0].finish_reason == "stop" for o in outs_on)


def test_preemption_and_prefix_hits_keep_the_tokens(tiny_model):
    batch = prompts(vocab_of(tiny_model), n=10, shared=40, seed=2)
    params = SamplingParams(max_tokens=20, ignore_eos=True, **GREEDY)
    config = dict(num_kvcache_blocks=24, max_model_len=128)
    (off, rec_off, _), (on, rec_on, _) = generate_both(tiny_model, batch, params, **config)
    assert on == off
    assert any(r.preempted_ids for r in rec_on), "the small cache must preempt"
    assert sum(r.prefix_hit_tokens for r in rec_on) > 0, "the shared head must hit the cache"


def test_penalties_and_logprobs_take_the_drained_path_with_the_same_results(tiny_model):
    batch = prompts(vocab_of(tiny_model), n=4, seed=3)
    params = [
        SamplingParams(max_tokens=8, repetition_penalty=1.3, **GREEDY),
        SamplingParams(max_tokens=8, frequency_penalty=0.5, ignore_eos=True, **GREEDY),
        SamplingParams(max_tokens=8, logprobs=2, ignore_eos=True, **GREEDY),
        SamplingParams(max_tokens=8, min_tokens=4, ignore_eos=True, **GREEDY),
    ]
    (off, _, outs_off), (on, _, outs_on) = generate_both(tiny_model, batch, params)
    assert on == off
    assert outs_on[2].outputs[0].logprobs is not None
    lp = [c.outputs[0].cumulative_logprob for c in (outs_off[2], outs_on[2])]
    assert lp[0] == pytest.approx(lp[1])


def test_each_record_carries_its_own_steps_tokens(tiny_model):
    batch = prompts(vocab_of(tiny_model), n=5, seed=4)
    params = SamplingParams(max_tokens=7, ignore_eos=True, **GREEDY)
    with engine(tiny_model, True) as llm:
        records = []
        llm.subscribe(records.append)
        ids = [llm.add_request(p, params) for p in batch]
        while llm.has_unfinished():
            llm.step_overlapped()
            for seq in llm.scheduler.running:
                assert sum(map(is_pending, seq.token_ids)) <= 1  # at most one, the last
        llm.drain()
        outs = {i: llm.get_output(i).outputs[0].token_ids for i in ids}
    assert [r.step for r in records] == list(range(len(records)))
    rebuilt = {i: [] for i in ids}
    for r in records:
        for sid, tok in zip(r.seq_ids, r.tokens):
            if tok is not None:
                rebuilt[sid].append(tok)
    assert rebuilt == outs


def test_abort_while_a_step_is_in_flight(tiny_model):
    """Aborting after record k keeps exactly the tokens of steps 0..k, as without overlap."""
    batch = prompts(vocab_of(tiny_model), n=3, seed=5)
    params = SamplingParams(max_tokens=12, ignore_eos=True, **GREEDY)
    kept = []
    for overlap in (False, True):
        with engine(tiny_model, overlap) as llm:
            ids = [llm.add_request(p, params) for p in batch]
            steps = 0
            while steps < 4:
                record = llm.step_overlapped()
                steps += record is not None
            llm.abort(ids[1])
            assert not any(map(is_pending, llm.request_sequences(ids[1])[0].token_ids))
            while llm.has_unfinished():
                llm.step_overlapped()
            llm.drain()
            out = llm.get_output(ids[1]).outputs[0]
            assert out.finish_reason == "abort"
            kept.append(out.token_ids)
            assert llm.check_integrity() == []
    assert kept[0] == kept[1] and len(kept[0]) == 4


def test_step_drains_and_shows_exactly_one_step(tiny_model):
    params = SamplingParams(max_tokens=6, ignore_eos=True, **GREEDY)
    with engine(tiny_model, True) as llm:
        llm.add_request([5, 6, 7, 8], params)
        assert llm.step_overlapped() is None  # launched step 0, finished nothing
        assert llm.step_loop.in_flight is not None
        record = llm.step()  # finishes the step in flight, launches nothing
        assert record.step == 0 and llm.step_loop.in_flight is None
        record = llm.step()
        assert record.step == 1 and llm.step_loop.in_flight is None


def test_config_switch(tiny_model):
    with LLM(tiny_model, kvcache_block_size=16) as llm:  # "auto": on for CUDA only
        assert llm.config.overlap_scheduling is llm.config.device.startswith("cuda")
    with LLM(tiny_model, kvcache_block_size=16, overlap_scheduling=False) as llm:
        llm.add_request([5, 6, 7], SamplingParams(max_tokens=2))
        assert llm.step_overlapped() is not None  # off: the same as step()
    with pytest.raises(ConfigError, match="tensor_parallel_size=1"):
        LLM(tiny_model, overlap_scheduling=True, tensor_parallel_size=2)
    with pytest.raises(ConfigError, match="overlap_scheduling"):
        LLM(tiny_model, overlap_scheduling="yes")


def test_the_next_step_is_launched_before_the_last_is_postprocessed(tiny_model):
    params = SamplingParams(max_tokens=5, ignore_eos=True, **GREEDY)
    with engine(tiny_model, True) as llm:
        order = []
        launch, post = llm.executor.launch, llm.scheduler.postprocess

        def launched(inputs):
            order.append(("launch", int((inputs.input_ids < 0).sum())))
            return launch(inputs)

        def postprocessed(batch, out):
            order.append(("post", batch.step))
            return post(batch, out)

        llm.executor.launch, llm.scheduler.postprocess = launched, postprocessed
        llm.generate([[5, 6, 7], [8, 9, 10, 11]], params, use_tqdm=False)
    # prefill, then 4 decode steps whose inputs are the placeholders of the step before
    assert order == [
        ("launch", 0),
        ("launch", 2),
        ("post", 0),
        ("launch", 2),
        ("post", 1),
        ("launch", 2),
        ("post", 2),
        ("launch", 2),
        ("post", 3),
        ("post", 4),
    ]


@pytest.mark.parametrize("seed", range(4))
def test_random_workloads_with_aborts_match(tiny_model, seed):
    """Random prompts (some sharing a head), lengths, stop tokens, a small cache and a small
    budget (chunks, preemptions, prefix hits), and aborts after given records: the same tokens and
    finishes with overlap on and off, and a consistent cache after every call."""
    rng = random.Random(seed)
    vocab = vocab_of(tiny_model)
    head = [rng.randrange(3, vocab) for _ in range(rng.choice((0, 16, 40)))]
    batch = [
        (head if rng.random() < 0.5 else []) + [rng.randrange(3, vocab) for _ in range(n)]
        for n in (rng.randint(1, 60) for _ in range(rng.randint(4, 12)))
    ]
    stops = [rng.randrange(3, vocab) for _ in range(3)]
    params = [
        SamplingParams(
            max_tokens=rng.randint(1, 30),
            ignore_eos=True,
            stop_token_ids=stops if rng.random() < 0.3 else (),
            **GREEDY,
        )
        for _ in batch
    ]
    aborts = {rng.randrange(2, 20): rng.randrange(len(batch)) for _ in range(2)}  # record -> req
    config = dict(
        num_kvcache_blocks=rng.choice((12, 24, 64)),
        max_num_batched_tokens=rng.choice((32, 64, 512)),
        max_num_seqs=rng.choice((3, 8)),
        max_model_len=128,
    )
    results = []
    for overlap in (False, True):
        with engine(tiny_model, overlap, **config) as llm:
            ids = [llm.add_request(p, sp) for p, sp in zip(batch, params)]
            done = 0
            while llm.has_unfinished():
                if llm.step_overlapped() is not None:
                    done += 1
                    if done in aborts:
                        llm.abort(ids[aborts[done]])
                assert llm.check_integrity() == []
            llm.drain()
            outs = [llm.get_output(i).outputs[0] for i in ids]
            results.append([(o.token_ids, o.finish_reason) for o in outs])
    assert results[0] == results[1]


def test_between_overlapped_steps_the_known_completion_leaves_the_pending_token_out(tiny_model):
    params = SamplingParams(max_tokens=6, ignore_eos=True, **GREEDY)
    with engine(tiny_model, True) as llm:
        rid = llm.add_request([5, 6, 7, 8], params)
        for _ in range(3):
            llm.step_overlapped()
        seq = llm.request_sequences(rid)[0]
        assert is_pending(seq.token_ids[-1]) and seq.num_completion_tokens == 3
        assert seq.completion_token_ids == seq.token_ids[4:-1]  # the two tokens known
        assert not any(map(is_pending, seq.completion_token_ids))
        llm.drain()
        assert seq.completion_token_ids == seq.token_ids[4:] and len(seq.completion_token_ids) == 3


@pytest.mark.parametrize(
    "params, reason",
    [
        (dict(max_tokens=4), None),
        (dict(max_tokens=4, logprobs=1), "blocking collect"),
        (dict(max_tokens=4, repetition_penalty=1.2), "penalties"),
        (dict(max_tokens=1), "nothing ahead"),
    ],
)
def test_the_cases_that_cannot_overlap_are_named_in_one_place(tiny_model, params, reason):
    with engine(tiny_model, True) as llm:
        llm.add_request([5, 6, 7, 8], SamplingParams(ignore_eos=True, **GREEDY, **params))
        assert llm.step_overlapped() is None  # the first call launches only
        assert llm.step_loop.must_finish_first(llm.step_loop.in_flight) == reason
        record = llm.step_overlapped()  # finishes step 0 (first, if it cannot overlap)
        assert record.step == 0
        assert (llm.step_loop.in_flight is None) == (reason == "nothing ahead")
        llm.drain()
        assert llm.check_integrity() == []
