"""The fused sampling kernel as it was at commit c295da4, before issue 30: the baseline that
benchmarks/gpu_kernels_check.py times and checks the current kernel against (one Philox call and
two accurate logs per column, 8192-column chunks whatever the batch)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

CHUNK = 8192  # columns per program: a 151936-token vocabulary spreads over 19 programs a row


@triton.jit
def _gumbel_argmax_kernel(
    logits_ptr, stride, temps_ptr, seeds_ptr, best_ptr, idx_ptr, bad_ptr, vocab, num_chunks,
    CHUNK: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """Program (row, chunk): the best perturbed score of one column chunk, its column, and
    whether any logit there is NaN/inf. A torch argmax over chunks finishes the row."""
    row = tl.program_id(0)
    chunk = tl.program_id(1)
    temp = tl.load(temps_ptr + row)
    seed = tl.load(seeds_ptr + row)
    inv_t = tl.where(temp > 0, 1.0 / tl.maximum(temp, 1e-30), 1.0)
    best = tl.full([BLOCK], float("-inf"), tl.float32)
    best_idx = tl.zeros([BLOCK], tl.int32)
    bad = tl.zeros([BLOCK], tl.int32)
    for start in range(chunk * CHUNK, chunk * CHUNK + CHUNK, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < vocab
        x = tl.load(logits_ptr + row * stride + cols, mask=mask, other=float("-inf")).to(tl.float32)
        bad |= (mask & ((x != x) | (tl.abs(x) == float("inf")))).to(tl.int32)
        u = tl.rand(seed, cols)
        gumbel = -tl.log(-tl.log(tl.maximum(u, 1e-20)))
        score = tl.where(temp > 0, x * inv_t + gumbel, x)
        score = tl.where(mask, score, float("-inf"))
        better = score > best  # strict: the earliest column wins ties, as argmax does
        best_idx = tl.where(better, cols, best_idx)
        best = tl.where(better, score, best)
    top = tl.max(best, 0)
    idx = tl.min(tl.where(best == top, best_idx, 2147483647), 0)
    out = row * num_chunks + chunk
    tl.store(best_ptr + out, top)
    tl.store(idx_ptr + out, idx)
    tl.store(bad_ptr + out, tl.max(bad, 0))


def gumbel_argmax(
    logits: torch.Tensor, temperatures: torch.Tensor, seeds: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: a token drawn at its temperature (argmax when 0), and whether its logits were bad.

    ``seeds`` are int64 per row (non-negative, < 2**63). Returns (tokens int64, bad bool)."""
    assert logits.dim() == 2 and logits.stride(1) == 1
    rows, vocab = logits.shape
    chunk = min(CHUNK, triton.next_power_of_2(vocab))
    chunks = triton.cdiv(vocab, chunk)
    best = torch.empty(rows, chunks, dtype=torch.float32, device=logits.device)
    idx = torch.empty(rows, chunks, dtype=torch.int32, device=logits.device)
    bad = torch.empty(rows, chunks, dtype=torch.int32, device=logits.device)
    if rows:
        _gumbel_argmax_kernel[(rows, chunks)](
            logits,
            logits.stride(0),
            temperatures,
            seeds,
            best,
            idx,
            bad,
            vocab,
            chunks,
            CHUNK=chunk,
            BLOCK=min(1024, chunk),
            num_warps=4,
        )
    winner = best.argmax(dim=1, keepdim=True)  # first chunk on ties: chunks are in column order
    return idx.gather(1, winner).squeeze(1).long(), bad.amax(dim=1).bool()
