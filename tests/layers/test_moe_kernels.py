"""Triton fused MoE (layers/moe_kernels.py) vs the pure-torch reference experts, and the alignment.

Runs on CPU under TRITON_INTERPRET=1 (set here when no GPU is visible) on tiny shapes, skipped
where triton is not installed. Outputs are poisoned first, so an unwritten row fails.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede the first `import triton`
pytest.importorskip("triton")

from nanovllm.layers import moe_kernels as mk  # noqa: E402
from nanovllm.layers.moe import experts_torch, select_experts  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2}


def test_align_sorts_pairs_by_expert_and_pads_each_run():
    ids = torch.tensor([[2, 0], [0, 1], [2, 0]], device=DEVICE)
    pairs, block_expert, num_padded = mk.align_by_expert(ids, num_experts=4, block_m=4)
    n = 6
    assert num_padded.item() == 12
    assert pairs[:12].tolist() == [1, 2, 5, n, 3, n, n, n, 0, 4, n, n]
    assert (pairs[12:] == n).all()  # the worst-case tail stays padding
    assert block_expert[:3].tolist() == [0, 1, 2] and (block_expert[3:] == 4).all()


def check(t, e, k, h, n, dtype=torch.float32, skew=False):
    gen = torch.Generator().manual_seed(t * 1000 + e)
    x = torch.randn(t, h, generator=gen).to(DEVICE, dtype)
    w13 = (0.2 * torch.randn(e, 2 * n, h, generator=gen)).to(DEVICE, dtype)
    w2 = (0.2 * torch.randn(e, h, n, generator=gen)).to(DEVICE, dtype)
    logits = torch.randn(t, e, generator=gen)
    if skew:  # most tokens to expert 0: one long run, several idle experts
        logits[:, 0] += 4.0
    weights, ids = select_experts(logits.to(DEVICE, dtype), k, norm_topk_prob=True)
    want = experts_torch(x.double(), w13.double(), w2.double(), weights.double(), ids)
    got = mk.fused_experts(x, w13, w2, weights, ids)
    assert got.dtype == dtype and got.shape == (t, h) and torch.isfinite(got).all()
    err = (got.double() - want).norm() / want.norm()
    assert err < TOLERANCE[dtype], f"relative error {err:.2e}"


@pytest.mark.parametrize(
    "t, e, k, h, n",
    [
        (1, 4, 2, 32, 16),  # a single decode token
        (7, 8, 2, 64, 32),  # decode tiles (BLOCK_M 16)
        (5, 16, 4, 48, 40),  # H, N not multiples of the tile: masked edges
        (300, 8, 2, 64, 32),  # prefill tiles (BLOCK_M 64)
    ],
)
def test_fused_experts_equal_the_reference(t, e, k, h, n):
    check(t, e, k, h, n)


def test_skewed_routing_and_idle_experts():
    check(90, 16, 2, 32, 16, skew=True)


@pytest.mark.skipif(DEVICE == "cpu", reason="bf16 tl.dot on GPU only")
def test_bfloat16_within_bf16_tolerance():
    check(256, 128, 8, 2048, 768, dtype=torch.bfloat16)


def test_engine_with_triton_experts_equals_torch_ref_on_tiny_moe():
    """End to end: the triton backend (attention and fused experts) against torch_ref, greedy,
    float32, on the tiny Qwen3-MoE (interpreted on CPU; on a GPU tests/models/test_gpu_families.py
    also runs it with CUDA graphs)."""
    import random

    from nanovllm import LLM, SamplingParams
    from nanovllm.testing import tiny_model_path

    path = str(tiny_model_path(family="qwen3_moe"))
    rng = random.Random(0)
    prompts = [[rng.randrange(3, 448) for _ in range(n)] for n in (1, 5, 17, 33)]
    params = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True, logprobs=0)
    outs = {}
    for backend in ("torch_ref", "triton"):
        with LLM(path, kvcache_block_size=16, attention_backend=backend, dtype="float32",
                 enforce_eager=True) as llm:  # fmt: skip
            assert llm.executor.model.model.layers[0].mlp.experts.impl == (
                "triton" if backend == "triton" else "torch"
            )
            outs[backend] = llm.generate(prompts, params, use_tqdm=False)
    for a, b in zip(outs["triton"], outs["torch_ref"], strict=True):
        assert a["token_ids"] == b["token_ids"]
        torch.testing.assert_close(
            torch.tensor(a["logprobs"]), torch.tensor(b["logprobs"]), atol=1e-4, rtol=0
        )
