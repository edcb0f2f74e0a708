"""The triton backend inside the whole engine, on CPU under TRITON_INTERPRET=1 (tiny shapes):
greedy outputs equal the torch reference backend's, with chunked prefill and prefix hits; with the
Triton elementwise kernels, storing K/V in attention's prologue (``fused_kv_store``) changes no
output bit."""

from __future__ import annotations

import os
import random

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from nanovllm import LLM, SamplingParams  # noqa: E402


def test_triton_backend_matches_torch_ref_in_the_engine(tiny_model):
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("triton was imported before TRITON_INTERPRET=1 could be set")
    rng = random.Random(0)
    shared = [rng.randrange(3, 448) for _ in range(20)]
    others = [[rng.randrange(3, 448) for _ in range(n)] for n in (1, 5, 17, 40)]
    prompts = [shared + [1], *others, shared + [2, 3]]  # the last comes after the first is cached
    params = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True, logprobs=0)
    outs = {}
    for backend in ("torch_ref", "triton"):
        with LLM(
            tiny_model,
            kvcache_block_size=16,
            attention_backend=backend,
            max_num_batched_tokens=24,
            dtype="float32",
            max_num_seqs=3,
            enforce_eager=True,
        ) as llm:
            outs[backend] = llm.generate(prompts, params, use_tqdm=False)
            assert llm.get_metrics()["prefix_hit_tokens"] > 0
    for a, b in zip(outs["torch_ref"], outs["triton"]):
        assert a["token_ids"] == b["token_ids"]
        torch.testing.assert_close(
            torch.tensor(a["logprobs"]), torch.tensor(b["logprobs"]), atol=1e-4, rtol=0
        )


def test_fused_gpu_sampler_logic_under_the_interpreter():
    from nanovllm.engine.runner.model_runner import sampler_output
    from nanovllm.layers.sampler import Sampler
    from nanovllm.layers.sampling_batch import SamplingBatch

    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("triton was imported before TRITON_INTERPRET=1 could be set")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sampler = Sampler(device, fused=True)
    logits = torch.randn(4, 500, device=device)
    logits[2] = logits[1]
    logits[3, 17] = float("nan")
    batch = SamplingBatch(
        [0.0, 0.7, 0.7, 1.0],
        [None] * 4,
        [1.0] * 4,
        [None, 5, 5, None],
        [0, 3, 3, 0],
        [0, None, None, None],
    )
    out = sampler_output(sampler.sample(logits, batch))
    assert out.token_ids[0] == int(logits[0].argmax())  # greedy
    assert out.token_ids[1] == out.token_ids[2]  # same seed and position, same logits
    assert out.finite == [True, True, True, False]
    torch.testing.assert_close(torch.tensor(out.logprobs[0]), logits[0].log_softmax(-1).max().cpu())
    probs = torch.tensor([0.6, 0.3, 0.1])
    n = 3000
    many = SamplingBatch([1.0] * n, [None] * n, [1.0] * n, [None] * n, [0] * n, [None] * n)
    tokens = sampler_output(
        sampler.sample(probs.log().expand(n, 3).contiguous().to(device), many)
    ).token_ids
    freq = torch.bincount(torch.tensor(tokens), minlength=3).float() / n
    assert torch.allclose(freq, probs, atol=0.03)


def test_triton_backend_verifies_drafts_like_torch_ref(teaching_model):
    """Speculative decoding's verification rows (a decode with k draft tokens: k + 1 queries
    after a cached context) through the Triton kernel give the reference's greedy tokens."""
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("triton was imported before TRITON_INTERPRET=1 could be set")
    prompts = ["Monday Tuesday Wednesday Thursday", "one two three", "a b c d e"]
    params = SamplingParams(temperature=0, max_tokens=8)
    outs = {}
    for backend in ("torch_ref", "triton"):
        with LLM(
            teaching_model,
            kvcache_block_size=16,
            attention_backend=backend,
            dtype="float32",
            enforce_eager=True,
            speculative_config={"method": "ngram", "num_speculative_tokens": 3},
        ) as llm:
            outs[backend] = [o["token_ids"] for o in llm.generate(prompts, params, use_tqdm=False)]
            assert llm.get_metrics()["spec_decode_num_drafts"] > 0
    assert outs["triton"] == outs["torch_ref"]


def _prologues_storing_kv(llm) -> int:
    return sum(
        getattr(m, "_prologue_store_kv", None) is not None for m in llm.executor.model.modules()
    )


def _generate(model, prompts, params, **config):
    with LLM(model, kvcache_block_size=16, dtype="float32", enforce_eager=True, **config) as llm:
        outs = llm.generate(prompts, params, use_tqdm=False)
        return outs, _prologues_storing_kv(llm), llm.get_metrics()


def test_fused_kv_store_changes_no_output_in_the_engine(tiny_model):
    """Chunked prefill (24-token budget), a prefix-cache hit (the cached tokens' slots are not
    recomputed), decodes: the fused store writes the caches the separate store would, so the
    greedy tokens and their logprobs are equal to the bit, flag on and off."""
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("triton was imported before TRITON_INTERPRET=1 could be set")
    rng = random.Random(1)
    shared = [rng.randrange(3, 448) for _ in range(20)]
    prompts = [shared + [1], [rng.randrange(3, 448) for _ in range(40)], [7], shared + [2, 3]]
    params = SamplingParams(temperature=0, max_tokens=5, ignore_eos=True, logprobs=0)
    runs = {}
    for fused in (False, True):
        runs[fused] = _generate(
            tiny_model, prompts, params, attention_backend="triton", elementwise="triton",
            fused_kv_store=fused, max_num_batched_tokens=24, max_num_seqs=3,
        )  # fmt: skip
    (off, off_fused, _), (on, on_fused, metrics) = runs[False], runs[True]
    assert off_fused == 0 and on_fused > 0  # the flag decided which path ran
    assert metrics["prefix_hit_tokens"] > 0
    for a, b in zip(off, on):
        assert a["token_ids"] == b["token_ids"] and a["logprobs"] == b["logprobs"]


def test_fused_kv_store_verifies_drafts_like_torch_ref(teaching_model):
    """Speculative decoding's rows (1 + k query tokens per sequence) with the fused store."""
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("triton was imported before TRITON_INTERPRET=1 could be set")
    prompts = ["Monday Tuesday Wednesday Thursday", "one two three"]
    params = SamplingParams(temperature=0, max_tokens=6)
    spec = {"method": "ngram", "num_speculative_tokens": 3}
    ref, _, _ = _generate(teaching_model, prompts, params, attention_backend="torch_ref")
    fused, n_fused, metrics = _generate(
        teaching_model, prompts, params, attention_backend="triton", elementwise="triton",
        speculative_config=spec,
    )  # fmt: skip
    assert n_fused > 0 and metrics["spec_decode_num_drafts"] > 0
    assert [o["token_ids"] for o in fused] == [o["token_ids"] for o in ref]


@pytest.mark.gpu
def test_fused_kv_store_changes_no_output_with_cuda_graphs(tiny_model):
    """On the GPU: bf16, CUDA graphs (padded rows with slot -1), the default elementwise
    kernels; the fused store on and off give the same tokens and logprobs to the bit."""
    rng = random.Random(2)
    shared = [rng.randrange(3, 448) for _ in range(40)]
    prompts = [shared + [1], *([rng.randrange(3, 448) for _ in range(n)] for n in (3, 30, 90))]
    prompts.append(shared + [5, 6])
    params = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True, logprobs=0)
    runs = {}
    for fused in (False, True):
        with LLM(tiny_model, kvcache_block_size=16, fused_kv_store=fused) as llm:
            assert llm.executor.graphs is not None and llm.config.elementwise == "triton"
            runs[fused] = llm.generate(prompts, params, use_tqdm=False)
            assert (_prologues_storing_kv(llm) > 0) == fused
    for a, b in zip(runs[False], runs[True]):
        assert a["token_ids"] == b["token_ids"] and a["logprobs"] == b["logprobs"]
