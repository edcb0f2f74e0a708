"""Fused GPU sampling: one pass over each row's logits, no probability or noise tensors.

Gumbel-max: ``argmax(logits / T + G)`` with ``G = -log(-log(U))`` draws from
``softmax(logits / T)``.
``U`` comes from Philox keyed by a per-row seed (the request's seed mixed with its position, or a
fresh engine draw), so seeded requests repeat whatever their batch. Greedy rows (T = 0) take the
plain argmax, the earliest column on ties. The same pass flags rows whose logits hold NaN or inf.

Cost (an H200 at batch 256 x 151,936 logits): the pass is arithmetic-bound, not memory-bound.
One Philox4x32-10 call yields four 32-bit words; each feeds one column (counter = column group,
word = which quarter of the block), so a column costs a quarter of a Philox call, not a whole one
with three words thrown away. The stream is Philox's own, so its statistical quality is unchanged.
The inner log, ``E = -ln U``, stays the accurate one: the winning columns have ``U`` near 1,
where a fast ``log2`` has an absolute error (about 2**-22) as large as ``E`` itself. The outer log
may be the hardware's ``lg2.approx`` (CUDA): its absolute error of about 2**-22 in ``log2(E)``
moves a score by under 2e-7, the size of the float32 rounding of ``logits / T`` itself. Scores are
kept in log2 units (``logits * log2(e) / T - log2(E)``), the same argmax as in nats.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_CHUNK = 8192  # columns per program at most: 19 programs a row of a 151,936-token vocabulary
MIN_PROGRAMS = 1024  # smaller batches take smaller chunks, so a few rows still fill the GPU


@triton.jit
def _log2(x, APPROX: tl.constexpr):
    """log2(x): the hardware approximation on CUDA (APPROX), the exact one elsewhere."""
    if APPROX:
        y = tl.inline_asm_elementwise(
            "lg2.approx.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        y = tl.log2(x)
    return y


@triton.jit
def _consider(row_ptr, cols, vocab, u, scale, sampled, best, best_idx, bad, APPROX: tl.constexpr):
    """Fold columns ``cols`` (with their uniforms ``u``) into the running best of each lane."""
    mask = cols < vocab
    x = tl.load(row_ptr + cols, mask=mask, other=float("-inf")).to(tl.float32)
    bad |= (mask & ((x != x) | (tl.abs(x) == float("inf")))).to(tl.int32)
    e = -tl.log(tl.maximum(u, 1e-20))  # Exp(1); accurate where it is small (see the docstring)
    score = tl.where(sampled, x * scale - _log2(e, APPROX), x)
    score = tl.where(mask, score, float("-inf"))
    better = score > best  # strict, and each lane's columns rise: the earliest column wins ties
    return tl.where(better, score, best), tl.where(better, cols, best_idx), bad


@triton.jit
def _gumbel_argmax_kernel(
    logits_ptr, stride, temps_ptr, seeds_ptr, best_ptr, idx_ptr, bad_ptr, vocab, num_chunks,
    chunk_size, BLOCK: tl.constexpr, APPROX: tl.constexpr,
):  # fmt: skip
    """Program (row, chunk): the best perturbed score of one column chunk, its column, and
    whether any logit there is NaN/inf. A torch argmax over chunks finishes the row.

    Each step covers BLOCK columns as four quarters of Q: lane i holds columns
    start + i, start + Q + i, start + 2Q + i, start + 3Q + i, fed by the four words of one Philox
    call at counter start / 4 + i (unique per column group of the row). Which word feeds which
    column depends on BLOCK (a function of the vocabulary) only, not on the chunk size (a function
    of the batch too): a seeded row draws the same token whatever its batch."""
    Q: tl.constexpr = BLOCK // 4
    row = tl.program_id(0)
    chunk = tl.program_id(1)
    temp = tl.load(temps_ptr + row)
    seed = tl.load(seeds_ptr + row)
    sampled = temp > 0
    scale = tl.where(sampled, 1.4426950408889634 / tl.maximum(temp, 1e-30), 1.0)
    row_ptr = logits_ptr + row.to(tl.int64) * stride
    best = tl.full([Q], float("-inf"), tl.float32)
    best_idx = tl.zeros([Q], tl.int32)
    bad = tl.zeros([Q], tl.int32)
    lane = tl.arange(0, Q)
    for start in range(chunk * chunk_size, chunk * chunk_size + chunk_size, BLOCK):
        u0, u1, u2, u3 = tl.rand4x(seed, start // 4 + lane)
        cols = start + lane
        best, best_idx, bad = _consider(row_ptr, cols, vocab, u0, scale, sampled, best, best_idx,
                                        bad, APPROX)  # fmt: skip
        best, best_idx, bad = _consider(row_ptr, cols + Q, vocab, u1, scale, sampled, best,
                                        best_idx, bad, APPROX)  # fmt: skip
        best, best_idx, bad = _consider(row_ptr, cols + 2 * Q, vocab, u2, scale, sampled, best,
                                        best_idx, bad, APPROX)  # fmt: skip
        best, best_idx, bad = _consider(row_ptr, cols + 3 * Q, vocab, u3, scale, sampled, best,
                                        best_idx, bad, APPROX)  # fmt: skip
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
    block = min(1024, max(triton.next_power_of_2(vocab), 16))
    chunk = _chunk_size(rows, vocab, block)
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
            chunk,
            BLOCK=block,
            APPROX=logits.is_cuda and torch.version.hip is None,
            # a thread per column of a quarter: the Philox words and the logits they meet share
            # one register layout (with more columns a thread, Triton shuffles between the two)
            num_warps=max(block // 128, 1),
        )
    winner = best.argmax(dim=1, keepdim=True)  # first chunk on ties: chunks are in column order
    return idx.gather(1, winner).squeeze(1).long(), bad.amax(dim=1).bool()


def _chunk_size(rows: int, vocab: int, block: int) -> int:
    """Columns per program: a multiple of ``block``, up to MAX_CHUNK, small enough that the batch
    makes about MIN_PROGRAMS programs (a runtime argument: no recompile per batch size)."""
    want = triton.cdiv(rows * vocab, MIN_PROGRAMS)
    blocks = min(triton.cdiv(min(want, MAX_CHUNK), block), triton.cdiv(vocab, block))
    return block * max(blocks, 1)
