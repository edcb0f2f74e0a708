"""Micro-benchmark of the Triton paged-attention kernels (GPU only).

Qwen3-0.6B attention shapes (16 query heads, 8 KV heads, head_dim 128, bf16). For each case it
first checks the kernel against a float32 torch reference (relative error < 1e-2), then times it
with `triton.testing.do_bench` (median; host launch overhead included) and, in a CUDA graph,
`do_bench_cudagraph` (median; what a captured decode step sees), and reports:
- decode: achieved GB/s over the bytes it must move (K/V of every context + q + out), next to a
  device-to-device copy's GB/s measured in the same run;
- prefill: achieved TFLOP/s over the causal attention FLOPs.

    python benchmarks/kernels_bench.py [--block-size 256] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

HEADS, KV_HEADS, HEAD_DIM, DTYPE = 16, 8, 128, torch.bfloat16


def make_case(q_lens: list[int], seq_lens: list[int], block_size: int) -> tuple:
    """Random cache with shuffled pages; q holds q_lens[b] new tokens of sequence b."""
    pages = [math.ceil(s / block_size) for s in seq_lens]
    k_cache = torch.randn(sum(pages), block_size, KV_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    v_cache = torch.randn_like(k_cache)
    order = torch.randperm(sum(pages)).tolist()
    block_tables = torch.zeros(len(seq_lens), max(pages), dtype=torch.int32)
    for b, n in enumerate(pages):
        block_tables[b, :n] = torch.tensor([order.pop() for _ in range(n)])
    q = torch.randn(sum(q_lens), HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    cu = torch.tensor([0, *torch.tensor(q_lens).cumsum(0).tolist()], dtype=torch.int32)
    seq = torch.tensor(seq_lens, dtype=torch.int32)
    return q, k_cache, v_cache, cu.cuda(), seq.cuda(), block_tables.cuda()


def reference(q, k_cache, v_cache, cu, seq_lens, block_tables, scale) -> torch.Tensor:
    out = torch.empty(q.shape, dtype=torch.float32, device=q.device)
    block_size, group = k_cache.shape[1], HEADS // KV_HEADS
    for b, seq_len in enumerate(seq_lens.tolist()):
        lo, hi = cu[b].item(), cu[b + 1].item()
        pages = block_tables[b, : math.ceil(seq_len / block_size)].long()
        k = k_cache[pages].flatten(0, 1)[:seq_len].float().repeat_interleave(group, 1)
        v = v_cache[pages].flatten(0, 1)[:seq_len].float().repeat_interleave(group, 1)
        visible = torch.ones(hi - lo, seq_len, dtype=torch.bool, device=q.device)
        visible = visible.tril(seq_len - (hi - lo))  # bottom-right aligned causal mask
        out[lo:hi] = torch.nn.functional.scaled_dot_product_attention(
            q[lo:hi].float().transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
            attn_mask=visible, scale=scale,
        ).transpose(0, 1)  # fmt: skip
    return out


def copy_bandwidth() -> float:
    import triton.testing  # imported late: the script must run (and say why not) without CUDA

    src = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = triton.testing.do_bench(lambda: dst.copy_(src), return_mode="median")
    return 2 * src.numel() / ms / 1e6  # GB/s, read + write


def run_case(name, tk, q_lens, seq_lens, block_size, num_splits=None) -> None:
    import triton.testing

    case = make_case(q_lens, seq_lens, block_size)
    scale = HEAD_DIM**-0.5
    kwargs = {"max_seqlen_q": max(q_lens), "scale": scale, "num_splits": num_splits}
    out = tk.paged_attention(*case, **kwargs)
    want = reference(*case, scale)
    err = ((out.float() - want).norm() / want.norm()).item()
    if not err < 1e-2:
        sys.exit(f"{name}: WRONG, relative error {err:.2e} >= 1e-2")
    launch = lambda: tk.paged_attention(*case, out=out, **kwargs)  # noqa: E731
    ms = triton.testing.do_bench(launch, return_mode="median")
    graph_ms = triton.testing.do_bench_cudagraph(launch, return_mode="median")
    elt = torch.finfo(DTYPE).bits // 8
    kv_bytes = 2 * sum(seq_lens) * KV_HEADS * HEAD_DIM * elt
    moved = kv_bytes + 2 * case[0].numel() * elt
    # causal (query, key) pairs: row i of q_len sees seq_len - q_len + i + 1 keys
    pairs = sum(s * q - q * (q - 1) / 2 for q, s in zip(q_lens, seq_lens, strict=True))
    tflops = 4 * HEADS * HEAD_DIM * pairs / ms / 1e9
    print(f"{name:<34} {ms * 1e3:7.1f} us {moved / ms / 1e6:6.0f} GB/s {tflops:6.1f} TFLOP/s"
          f" | graph {graph_ms * 1e3:7.1f} us {moved / graph_ms / 1e6:6.0f} GB/s"
          f" | rel.err {err:.1e}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("kernels_bench: no CUDA device here; this benchmark needs a GPU. Nothing to do.")
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
    # imported late: the script must run (and say why not) on a machine without CUDA or triton
    from nanovllm.attention import triton_kernels as tk

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    bs = args.block_size

    def ctx(n: int, lo: int = 100, hi: int = 2000) -> list[int]:
        return torch.randint(lo, hi + 1, (n,), generator=gen).tolist()

    print(f"{torch.cuda.get_device_name()}  block_size={bs}  "
          f"copy bandwidth {copy_bandwidth():.0f} GB/s")  # fmt: skip
    decode = ctx(256)
    for splits in (None, 1, 2, 4):
        run_case(f"decode b=256 ctx 100..2000 s={splits}", tk, [1] * 256, decode, bs,
                 splits)  # fmt: skip
    small = ctx(8, 4000, 8000)
    for splits in (None, 1):
        run_case(f"decode b=8 ctx 4k..8k s={splits}", tk, [1] * 8, small, bs, splits)
    prompts = ctx(8, 100, 1024)
    run_case("prefill 8 prompts 100..1024", tk, prompts, prompts, bs)
    run_case("prefill 4 x 2048", tk, [2048] * 4, [2048] * 4, bs)
    chunk_q, chunk_ctx = [512] + [1] * 64, [1536] + ctx(64)
    run_case("mixed: 512-chunk + 64 decodes", tk, chunk_q, chunk_ctx, bs)


if __name__ == "__main__":
    main()
