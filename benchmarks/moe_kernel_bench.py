"""The fused-MoE experts alone (GPU, bf16), on one Qwen3-30B-A3B layer: time, the bytes of the
experts the step touched over that time, and matmul rate. Decode-sized and prefill-sized steps.

    python benchmarks/moe_kernel_bench.py
"""

from __future__ import annotations

import torch
import triton

from nanovllm.layers.moe import select_experts
from nanovllm.layers.moe_kernels import fused_experts

H, N, E, K = 2048, 768, 128, 8  # hidden, moe_intermediate, experts, top-k


def _rotating(x, w13, w2, weights, ids):
    """One call per weight set in turn, so successive calls never find the weights in L2."""
    state = {"i": 0}

    def step():
        j = state["i"] = (state["i"] + 1) % len(w13)
        fused_experts(x, w13[j], w2[j], weights, ids)

    return step


def main() -> None:
    gen = torch.Generator(device="cuda").manual_seed(0)
    sets = 4  # rotate weight sets: 4 x 1.2 GB, far past the L2
    w13 = [0.02 * torch.randn(E, 2 * N, H, device="cuda", generator=gen).bfloat16()]
    w2 = [0.02 * torch.randn(E, H, N, device="cuda", generator=gen).bfloat16()]
    for _ in range(sets - 1):
        w13.append(torch.randn_like(w13[0]) * 0.02)
        w2.append(torch.randn_like(w2[0]) * 0.02)
    print(f"{'tokens':>7} {'ms':>8} {'experts':>8} {'GB/s':>8} {'TFLOP/s':>8}")
    for t in (1, 16, 64, 256, 512, 4096, 16384):
        x = torch.randn(t, H, device="cuda", generator=gen).bfloat16()
        router = torch.randn(t, E, device="cuda", generator=gen).bfloat16()
        weights, ids = select_experts(router, K, norm_topk_prob=True)
        ms = triton.testing.do_bench(
            _rotating(x, w13, w2, weights, ids), warmup=25, rep=200, return_mode="median"
        )
        touched = int(torch.unique(ids).numel())
        gbs = touched * 3 * H * N * 2 / (ms * 1e-3) / 1e9
        tflops = 2 * t * K * 3 * H * N / (ms * 1e-3) / 1e12
        print(f"{t:>7} {ms:>8.3f} {touched:>8} {gbs:>8.0f} {tflops:>8.1f}")


if __name__ == "__main__":
    main()
