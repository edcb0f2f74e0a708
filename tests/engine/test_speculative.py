"""Speculative decoding changes the work, never the result: greedy outputs with n-gram drafts
(k = 1, 3, 5) are token for token those without, on the teaching model and a random tiny model,
over random workloads with preemption (a tiny KV cache), aborts, stop strings, EOS, min_tokens,
max_tokens and n > 1; the cache passes its integrity check (lookahead slots included) after
every step. A property test (hypothesis); engines are built once per module and reused."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanovllm import LLM, SamplingParams

TEACHING_PROMPTS = [
    "Monday Tuesday Wednesday",
    "one two three four five six",
    "a b c d e f g",
    "7 x 4 = 28, 7 x 5 = 35,",
    "What's prefix caching?",
    "January February March April May June July August September October November December "
    "January February",
    "41 42 43 44 45",
]
TEACHING_STOPS = [None, ["Sunday"], ["ten"], ["="], ["k", "December"]]
TINY_STOPS = [None, ["e"], ["a b"]]
# small cache: 12 blocks of 16 tokens for sequences of up to 160, so workloads preempt
ENGINE = dict(kvcache_block_size=16, num_kvcache_blocks=12, max_model_len=160, max_num_seqs=6)


def tiny_prompts() -> list[list[int]]:
    """Token-id prompts for the random model: repeating patterns (drafts to find) and noise."""
    return [
        [5, 6, 7, 8] * 4,
        [9, 10, 11, 9, 10, 11, 9],
        [100 + (i * 37) % 300 for i in range(30)],
        [42] * 12,
        [3, 300, 4, 301, 5, 302, 3, 300],
    ]


@pytest.fixture(scope="module")
def engines(teaching_model, tiny_model):
    """(model name, k) -> an engine, built on first use; k = 0: no speculation."""
    built: dict[tuple[str, int], LLM] = {}
    paths = {"teaching": teaching_model, "tiny": tiny_model}

    def get(model: str, k: int) -> LLM:
        if (model, k) not in built:
            spec = {"method": "ngram", "num_speculative_tokens": k} if k else None
            built[model, k] = LLM(paths[model], speculative_config=spec, **ENGINE)
        return built[model, k]

    yield get
    for llm in built.values():
        llm.close()


def request_strategy(num_prompts: int, stops: list) -> st.SearchStrategy:
    def params(max_tokens, min_frac, n, stop, ignore_eos):
        return SamplingParams(
            temperature=0,
            max_tokens=max_tokens,
            min_tokens=int(max_tokens * min_frac),
            n=n,
            stop=stop,
            ignore_eos=ignore_eos,
        )

    return st.tuples(
        st.integers(0, num_prompts - 1),
        st.builds(
            params,
            st.integers(1, 40),
            st.sampled_from([0.0, 0.0, 0.5, 1.0]),
            st.sampled_from([1, 1, 2]),
            st.sampled_from(stops),
            st.booleans(),
        ),
    )


def run(llm: LLM, prompts: list, requests, abort: tuple[int, int] | None) -> list[list[list[int]]]:
    """Add the requests, step to the end (aborting request ``abort[0]`` before step
    ``abort[1]``) with the integrity check after every step; each request's samples' tokens."""
    ids = [llm.add_request(prompts[p], params) for p, params in requests]
    step = 0
    while llm.has_unfinished():
        if abort is not None and step == abort[1]:
            llm.abort(ids[abort[0]])
        llm.step()
        assert llm.check_integrity() == []
        step += 1
    assert llm.check_integrity() == []
    return [[list(c.token_ids) for c in llm.get_output(i).outputs] for i in ids]


def check_equal(base, spec, abort) -> None:
    for r, (b, s) in enumerate(zip(base, spec)):
        if abort is not None and r == abort[0]:  # stopped at different points: one a prefix
            for tb, ts in zip(b, s):
                short, long = sorted((tb, ts), key=len)
                assert long[: len(short)] == short
        else:
            assert s == b, f"request {r}"


def workload_test(engines, model: str, prompts, stops, k: int, data) -> None:
    requests = data.draw(st.lists(request_strategy(len(prompts), stops), min_size=1, max_size=5))
    abort = data.draw(
        st.none() | st.tuples(st.integers(0, len(requests) - 1), st.integers(0, 30)), "abort"
    )
    base = run(engines(model, 0), prompts, requests, abort)
    spec = run(engines(model, k), prompts, requests, abort)
    check_equal(base, spec, abort)


SETTINGS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 3, 5])
@SETTINGS
@given(data=st.data())
def test_greedy_teaching_model_identical_with_speculation(engines, k, data):
    workload_test(engines, "teaching", TEACHING_PROMPTS, TEACHING_STOPS, k, data)


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 3, 5])
@SETTINGS
@given(data=st.data())
def test_greedy_tiny_model_identical_with_speculation(engines, k, data):
    workload_test(engines, "tiny", tiny_prompts(), TINY_STOPS, k, data)


def test_drafts_are_accepted_and_counted(engines):
    """The teaching model continues the week: prompt lookup drafts it, and the target accepts
    most of it; the records and get_metrics() count the same drafts."""
    llm = engines("teaching", 3)
    llm.reset_metrics()
    records = []
    unsubscribe = llm.subscribe(records.append)
    try:
        prompt = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday Monday"
        out = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=30), use_tqdm=False)
    finally:
        unsubscribe()
    drafted = [r for r in records if r.drafts]
    assert drafted, "no step verified a draft"
    for r in drafted:
        assert len(r.drafts) == len(r.num_accepted) == len(r.seq_ids) == len(r.rolled_back_slots)
        for draft, a, slots, toks in zip(
            r.drafts, r.num_accepted, r.rolled_back_slots, r.new_token_ids
        ):
            assert 0 <= a <= len(draft)
            assert len(slots) == len(draft) - a  # one slot per rejected draft token
            assert toks[:a] == draft[:a]  # the accepted drafts come first, then the target's
    metrics = llm.get_metrics()
    assert metrics["spec_decode_num_drafts"] == sum(r.num_drafts for r in records)
    assert metrics["spec_decode_num_draft_tokens"] == sum(r.num_draft_tokens for r in records)
    accepted = sum(r.num_accepted_tokens for r in records)
    assert metrics["spec_decode_num_accepted_tokens"] == accepted
    assert (
        metrics["spec_decode_acceptance_rate"] == accepted / metrics["spec_decode_num_draft_tokens"]
    )
    assert metrics["spec_decode_acceptance_rate"] > 0.5  # the week repeats: drafts are right
    assert metrics["spec_decode_mean_acceptance_length"] == pytest.approx(
        1 + accepted / metrics["spec_decode_num_drafts"]
    )
    assert metrics["generated_tokens"] == len(out[0]["token_ids"])
    # fewer steps than tokens: that is the point
    assert len([r for r in records if r.seq_ids]) < len(out[0]["token_ids"])


@pytest.mark.parametrize("k", [0, 3], ids=["speculation-off", "k=3"])
def test_no_draft_means_acceptance_rate_0_and_length_1(engines, k):
    """As vLLM's SpeculativeDecodingMetrics: with no draft verified, the mean acceptance length is
    1.0 (each decode appends its own token), the acceptance rate 0.0."""
    llm = engines("teaching", k)
    llm.reset_metrics()
    assert llm.get_metrics()["spec_decode_mean_acceptance_length"] == 1.0  # no step yet
    # one token: the prefill samples it, no decode step drafts
    llm.generate(TEACHING_PROMPTS[:2], SamplingParams(temperature=0, max_tokens=1), use_tqdm=False)
    if k == 0:  # decodes, but nothing drafts
        llm.generate(TEACHING_PROMPTS[:2], SamplingParams(max_tokens=8), use_tqdm=False)
    m = llm.get_metrics()
    assert m["generated_tokens"] > 0 and m["spec_decode_num_drafts"] == 0
    assert m["spec_decode_num_draft_tokens"] == m["spec_decode_num_accepted_tokens"] == 0
    assert m["spec_decode_acceptance_rate"] == 0.0
    assert m["spec_decode_mean_acceptance_length"] == 1.0


def test_preemption_and_drafts_together(tiny_model):
    """A cache of 6 blocks forces preemptions while drafts hold lookahead blocks: same tokens."""
    prompts = tiny_prompts() * 2
    params = SamplingParams(temperature=0, max_tokens=30, ignore_eos=True)
    config = dict(kvcache_block_size=16, num_kvcache_blocks=6, max_model_len=96)
    outs, metrics = [], []
    for spec in (None, {"method": "ngram", "num_speculative_tokens": 4}):
        with LLM(tiny_model, speculative_config=spec, **config) as llm:
            outs.append([o["token_ids"] for o in llm.generate(prompts, params, use_tqdm=False)])
            assert llm.check_integrity() == []
            metrics.append(llm.get_metrics())
    assert outs[1] == outs[0]
    assert metrics[1]["preemptions"] >= 3 and metrics[1]["spec_decode_num_accepted_tokens"] > 0


def test_overlap_scheduling_falls_back_to_one_step_at_a_time(teaching_model):
    """overlap_scheduling=True with speculation: each step is finished before the next is
    scheduled (``StepLoop.must_finish_first`` says "speculation"), and the tokens are unchanged."""
    prompts = TEACHING_PROMPTS[:4]
    params = SamplingParams(temperature=0, max_tokens=20)
    outs = []
    for spec in (None, {"method": "ngram", "num_speculative_tokens": 3}):
        with LLM(teaching_model, speculative_config=spec, overlap_scheduling=True) as llm:
            outs.append([o["token_ids"] for o in llm.generate(prompts, params, use_tqdm=False)])
            if spec:
                llm.add_request(prompts[0], params)
                assert llm.step_overlapped() is None  # the first call only launches
                assert llm.step_loop.must_finish_first(llm.step_loop.in_flight) == "speculation"
                llm.drain()
    assert outs[1] == outs[0]
