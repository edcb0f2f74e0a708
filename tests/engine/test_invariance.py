"""Greedy outputs do not depend on how the engine schedules: preemption, prefix caching, chunked
prefill and batch composition change the work, never the result. Seeded sampling likewise."""

from __future__ import annotations

import random

import pytest

from nanovllm import LLM, SamplingParams

GREEDY = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True)


def workload(n: int = 8, seed: int = 1) -> list[list[int]]:
    rng = random.Random(seed)
    shared = [rng.randrange(3, 448) for _ in range(40)]
    prompts = [[rng.randrange(3, 448) for _ in range(rng.randint(2, 60))] for _ in range(n)]
    return prompts + [shared + [7, 8], shared + [9], shared[:35]]


def run(path, prompts, params=GREEDY, **config):
    config.setdefault("kvcache_block_size", 16)
    with LLM(path, **config) as llm:
        outs = llm.generate(prompts, params, use_tqdm=False)
        assert llm.check_integrity() == []
        return [o["token_ids"] for o in outs], llm.get_metrics()


@pytest.fixture(scope="module")
def baseline(tiny_model):
    tokens, _ = run(tiny_model, workload(), enable_prefix_caching=False)
    return tokens


def test_tiny_kv_cache_preempts_often_and_changes_nothing(tiny_model, baseline):
    # 6 blocks of 16 tokens: one sequence of max_model_len 96, or two or three short ones
    tokens, metrics = run(tiny_model, workload(), num_kvcache_blocks=6, max_model_len=96)
    assert metrics["preemptions"] >= 5
    assert tokens == baseline


def test_prefix_caching_on_and_off_agree(tiny_model, baseline):
    # Hashes are registered once a block is computed, so hits need the sharers in later steps.
    tokens, metrics = run(tiny_model, workload(), enable_prefix_caching=True, max_num_seqs=1)
    assert metrics["prefix_hit_tokens"] >= 64
    assert tokens == baseline


def test_small_token_budget_forces_chunked_prefill(tiny_model, baseline):
    tokens, metrics = run(tiny_model, workload(), max_num_batched_tokens=7)
    assert metrics["prefill_steps"] > 20
    assert tokens == baseline


@pytest.mark.parametrize("order", ["reversed", "one_by_one", "max_seqs_2"])
def test_batch_composition_does_not_matter(tiny_model, baseline, order):
    prompts = workload()
    if order == "reversed":
        tokens, _ = run(tiny_model, prompts[::-1])
        tokens = tokens[::-1]
    elif order == "one_by_one":
        tokens = [run(tiny_model, [p])[0][0] for p in prompts[:4]]
        assert tokens == baseline[:4]
        return
    else:
        tokens, _ = run(tiny_model, prompts, max_num_seqs=2)
    assert tokens == baseline


def test_seeded_sampling_is_independent_of_batch_mates(tiny_model):
    params = [
        SamplingParams(
            temperature=0.9, top_k=50, top_p=0.9, seed=100 + i, max_tokens=16, ignore_eos=True
        )
        for i in range(3)
    ]
    prompts = workload()[:3]
    together, _ = run(tiny_model, prompts, params)
    alone = [run(tiny_model, [p], sp)[0][0] for p, sp in zip(prompts, params)]
    assert together == alone
    noisy_neighbour = SamplingParams(temperature=1.0, max_tokens=16)
    mixed, _ = run(tiny_model, [prompts[0], [5, 6, 7]], [params[0], noisy_neighbour])
    assert mixed[0] == together[0]
    assert len(set(map(tuple, together))) == 3  # different seeds, different samples


def test_prefix_cache_computes_only_the_uncached_tokens(tiny_model):
    rng = random.Random(3)
    shared = [rng.randrange(3, 448) for _ in range(64)]  # 4 full blocks of 16
    with LLM(tiny_model, kvcache_block_size=16) as llm:
        llm.generate([shared + [1, 2, 3]], GREEDY, use_tqdm=False)
        records = []
        llm.subscribe(records.append)
        rid = llm.add_request(shared + [4, 5], GREEDY)
        while llm.has_unfinished():
            llm.step()
        prefill = [
            e for r in records for e in r.scheduled if e.seq_id == rid and e.phase == "prefill"
        ]
        assert [(e.start, e.num_tokens) for e in prefill] == [(64, 2)]
        assert records[0].prefix_hit_tokens == 64
        assert llm.get_output(rid)["num_cached_tokens"] == 64
