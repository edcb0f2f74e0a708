"""The triton backend inside the whole engine, on CPU under TRITON_INTERPRET=1 (tiny shapes):
greedy outputs equal the torch reference backend's, with chunked prefill and prefix hits."""

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
        with LLM(tiny_model, kvcache_block_size=16, attention_backend=backend, max_num_batched_tokens=24,
                 max_num_seqs=3, enforce_eager=True) as llm:
            outs[backend] = llm.generate(prompts, params, use_tqdm=False)
            assert llm.get_metrics()["prefix_hit_tokens"] > 0
    for a, b in zip(outs["torch_ref"], outs["triton"]):
        assert a["token_ids"] == b["token_ids"]
        torch.testing.assert_close(torch.tensor(a["logprobs"]), torch.tensor(b["logprobs"]), atol=1e-4, rtol=0)
