"""Fused mixture-of-experts on the GPU: pairs sorted by expert, then two grouped GEMMs.

A step routes ``T`` tokens to ``K`` experts each: ``P = T * K`` pairs, pair ``p`` being token
``p // K``'s ``p % K``-th choice. ``align_by_expert`` sorts the pairs by expert and pads each
expert's run to a multiple of ``BLOCK_M``, so every row block of the sorted list belongs to one
expert::

    ids (T=3, K=2)   [[2, 0], [0, 1], [2, 0]]       pairs 0..5 -> experts 2 0 0 1 2 0
    sorted_pairs     [1 2 5 P | 3 P P P | 0 4 P P]  BLOCK_M = 4; P marks padding
    block_expert     [0, 1, 2, ...]                  one expert per row block (E past the end)
    num_padded       12                              blocks at or past it exit at once

Then ``h = silu(x W_gate^T) * (x W_up^T)`` per pair (one kernel: both halves of w13 per tile),
and ``y = weight * (h W_down^T)`` per pair, written at the pair's own row; the K rows of a token
are summed at the end. Every shape depends only on ``T`` (the sorted list is sized for the worst
case, ``P + E (BLOCK_M - 1)``), and nothing syncs with the host, so a CUDA graph captures it.

Logic tested against ``layers.moe.experts_torch`` on CPU under ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


def align_by_expert(ids: torch.Tensor, num_experts: int, block_m: int):
    """-> (sorted_pairs [S] int32, block_expert [S / block_m] int32, num_padded [1] int64)."""
    flat = ids.flatten()
    n, dev = flat.numel(), flat.device
    counts = torch.zeros(num_experts, dtype=torch.int64, device=dev)
    counts.scatter_add_(0, flat, torch.ones_like(flat))
    padded = (counts + block_m - 1) // block_m * block_m
    ends = padded.cumsum(0)
    order = torch.argsort(flat, stable=True)  # pair ids, grouped by expert, in pair order
    expert = flat[order]
    rank = torch.arange(n, device=dev) - (counts.cumsum(0) - counts)[expert]
    size = triton.cdiv(n + num_experts * (block_m - 1), block_m) * block_m
    sorted_pairs = torch.full((size,), n, dtype=torch.int32, device=dev)
    sorted_pairs.scatter_(0, (ends - padded)[expert] + rank, order.to(torch.int32))
    starts = torch.arange(0, size, block_m, device=dev)
    block_expert = torch.searchsorted(ends, starts, right=True).to(torch.int32)
    return sorted_pairs, block_expert, ends[-1:]


@triton.jit(do_not_specialize=["num_pairs"])
def _grouped_gemm_kernel(
    a_ptr, w_ptr, out_ptr, pairs_ptr, block_expert_ptr, num_padded_ptr, scale_ptr,
    num_pairs, N, K, stride_a, stride_we, stride_wn, stride_out,
    A_ROW_DIV: tl.constexpr, GATED: tl.constexpr, SCALE_ROWS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    """Program (row block, column block): ``out[pair, n] = a[pair // A_ROW_DIV] . w[e, n]`` for the
    block's pairs (expert ``e``). GATED: columns n and N + n of w, combined as silu(g) * u.
    SCALE_ROWS: times the pair's routing weight. Padding rows are neither read nor written."""
    pid_m = tl.program_id(0)
    if pid_m * BLOCK_M >= tl.load(num_padded_ptr):
        return
    expert = tl.load(block_expert_ptr + pid_m).to(tl.int64)
    pair = tl.load(pairs_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))
    row_ok = pair < num_pairs
    a_rows = (pair // A_ROW_DIV).to(tl.int64)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < N
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + a_rows[:, None] * stride_a + offs_k[None, :]
    w_ptrs = w_ptr + expert * stride_we + offs_n[None, :].to(tl.int64) * stride_wn + offs_k[:, None]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k_ok = offs_k < K - k0
        a = tl.load(a_ptrs, mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        w_mask = k_ok[:, None] & n_ok[None, :]
        acc = tl.dot(a, tl.load(w_ptrs, mask=w_mask, other=0.0), acc, input_precision=DOT_PRECISION)
        if GATED:
            up = tl.load(w_ptrs + N * stride_wn, mask=w_mask, other=0.0)
            acc_up = tl.dot(a, up, acc_up, input_precision=DOT_PRECISION)
        a_ptrs += BLOCK_K
        w_ptrs += BLOCK_K
    if GATED:
        acc = acc / (1.0 + tl.exp(-acc)) * acc_up
    if SCALE_ROWS:
        acc = acc * tl.load(scale_ptr + pair, mask=row_ok, other=0.0).to(tl.float32)[:, None]
    out_ptrs = out_ptr + pair.to(tl.int64)[:, None] * stride_out + offs_n[None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & n_ok[None, :])


def _tiles(num_pairs: int, num_experts: int, dtype: torch.dtype) -> dict:
    """Few pairs per expert (decode): thin row blocks, long K steps. Many (prefill): square tiles.
    float32 (tests) halves K per step, so three pipeline stages still fit in shared memory."""
    k_scale = 2 if dtype == torch.float32 else 1
    if num_pairs <= 16 * num_experts:
        return dict(BLOCK_M=16, BLOCK_N=64, BLOCK_K=128 // k_scale, num_warps=4, num_stages=3)
    return dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=64 // k_scale, num_warps=4, num_stages=3)


def _gemm(a, w, out, pairs, block_expert, num_padded, scale, *, a_row_div, gated, scaled, tiles):
    num_pairs, n = out.shape
    grid = (pairs.numel() // tiles["BLOCK_M"], triton.cdiv(n, tiles["BLOCK_N"]))
    _grouped_gemm_kernel[grid](
        a, w, out, pairs, block_expert, num_padded, scale,
        num_pairs, n, a.shape[1], a.stride(0), w.stride(0), w.stride(1), out.stride(0),
        A_ROW_DIV=a_row_div, GATED=gated, SCALE_ROWS=scaled,
        DOT_PRECISION="ieee" if a.dtype == torch.float32 else "tf32", **tiles,
    )  # fmt: skip


def fused_experts(
    x: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    weights: torch.Tensor,
    ids: torch.Tensor,
) -> torch.Tensor:
    """x [T, H], w13 [E, 2N, H], w2 [E, H, N], weights / ids [T, K] -> [T, H] (this rank's part)."""
    assert x.stride(-1) == 1 and w13.is_contiguous() and w2.is_contiguous()
    (t, h), (e, two_n, _), k = x.shape, w13.shape, ids.shape[1]
    tiles = _tiles(t * k, e, x.dtype)
    pairs, block_expert, num_padded = align_by_expert(ids, e, tiles["BLOCK_M"])
    scale = weights.reshape(-1).contiguous()
    inter = torch.empty(t * k, two_n // 2, dtype=x.dtype, device=x.device)
    _gemm(x, w13, inter, pairs, block_expert, num_padded, scale, a_row_div=k, gated=True,
          scaled=False, tiles=tiles)  # fmt: skip
    out = torch.empty(t * k, h, dtype=x.dtype, device=x.device)
    _gemm(inter, w2, out, pairs, block_expert, num_padded, scale, a_row_div=1, gated=False,
          scaled=True, tiles=tiles)  # fmt: skip
    return out.view(t, k, h).sum(dim=1)
