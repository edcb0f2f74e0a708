"""Skinny GEMMs for decode: ``x @ weight.T (+ bias)`` for ``x`` of at most 16 rows, in Triton.

At decode a linear layer multiplies a few rows by a large weight: its time is the weight's read
from memory. cuBLAS's kernels for these shapes read it at 1.2 to 1.7 TB/s on an H200 (about 4.1
measured by a copy). Here program ``(n, s)`` multiplies the rows (padded to 16 and masked) by a
``block_n`` x ``K / split`` slab of the weight, a tensor-core dot accumulating in float32::

    weight [N, K]      k split 0   k split 1   ...
      n tile 0       | prog(0,0) | prog(0,1) |        each program streams its slab once
      n tile 1       | prog(1,0) | prog(1,1) |
                                                      split > 1: partials to a float32 workspace;
    out [M, N] = x [M, K] @ weight.T                  the tile's last program to arrive sums them

With ``split > 1`` (more programs where N is small) each program writes its float32 partial to a
workspace and counts itself in on its tile's counter; the last to arrive sums the partials in
split order (so the result does not depend on arrival order), adds the bias, rounds once to the
output dtype and re-arms the counter for the next launch. One launch, no separate reduction.

Contract: ``skinny_linear(x, weight, bias, config, workspace)`` equals ``F.linear(x, weight, bias)``
up to float32 accumulation order and one rounding, for ``x`` [M <= 16, K] (copied first if its
columns are strided), ``weight`` [N, K] contiguous, where ``config.fits(N, K)``; launches on one
stream may share one ``Workspace`` (they do not overlap). Half-precision operands (float32 ones
would go through TF32: the planner leaves float32 layers to cuBLAS).

Which kernel runs is measured, never assumed: ``plan_linears`` (layers/skinny_plan.py) times this
kernel's candidate configs and cuBLAS for each weight shape and row count and hands a layer a
``SkinnyPlan`` only where the kernel is faster; ``LinearBase.forward`` follows the plan. The
engine plans only when it captures decode CUDA graphs (the kernel was timed in graphs: its launch
from Python costs more host time than cuBLAS's, which graphs hide).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

BLOCK_M = 16  # the rows, padded: the smallest tensor-core tile
MAX_ROWS = BLOCK_M
VARIANTS = ((64, 128), (32, 128), (16, 256))  # (block_n, block_k): one compile each
SPLITS = (1, 2, 4, 8)
PROGRAMS = (96, 1024)  # a candidate launches between this many programs (132 SMs on an H200)


@dataclass(frozen=True)
class SkinnyConfig:
    block_n: int
    block_k: int
    split: int
    num_warps: int = 4
    num_stages: int = 4

    def fits(self, n: int, k: int) -> bool:
        return n % self.block_n == 0 and k % (self.block_k * self.split) == 0

    def __str__(self) -> str:
        return (
            f"n{self.block_n} k{self.block_k} split{self.split} w{self.num_warps}s{self.num_stages}"
        )


def candidates(n: int, k: int) -> list[SkinnyConfig]:
    """The configs worth timing for a weight [n, k]: those that fit it and make enough programs to
    cover the GPU, but not so many that the partial sums cost more than they spread."""
    lo, hi = PROGRAMS
    return [
        SkinnyConfig(bn, bk, s)
        for bn, bk in VARIANTS
        for s in SPLITS
        if SkinnyConfig(bn, bk, s).fits(n, k) and lo <= n // bn * s <= hi
    ]


class Workspace:
    """Float32 partial sums and per-tile arrival counters, shared by the launches of one stream.
    Allocated before CUDA-graph capture; the counters are zero between launches."""

    def __init__(self, device: torch.device, max_n: int, max_split: int = max(SPLITS)):
        self.max_n, self.max_split = max_n, max_split
        min_block_n = min(bn for bn, _ in VARIANTS)
        self.partial = torch.empty(max_split * BLOCK_M * max_n, dtype=torch.float32, device=device)
        self.count = torch.zeros(triton.cdiv(max_n, min_block_n), dtype=torch.int32, device=device)


@dataclass
class SkinnyPlan:
    """What a layer runs for each row count it was measured at (others: cuBLAS)."""

    configs: dict[int, SkinnyConfig]
    workspace: Workspace

    def __call__(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        return skinny_linear(x, weight, bias, self.configs[x.shape[0]], self.workspace)


@triton.jit
def _finish(out_ptrs, acc, B, rn, row_ok, HAS_BIAS: tl.constexpr):
    if HAS_BIAS:
        acc += tl.load(B + rn).to(tl.float32)[None, :]
    tl.store(out_ptrs, acc.to(out_ptrs.dtype.element_ty), mask=row_ok[:, None])


@triton.jit(do_not_specialize=["M"])
def _skinny_kernel(
    X, W, B, Out, Partial, Count, M, N, K, stride_x, stride_o, k_per_split,
    HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    splits = tl.num_programs(1)
    rm = tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = pid_k * k_per_split + tl.arange(0, BLOCK_K)
    row_ok = rm < M
    x_ptrs = X + rm[:, None] * stride_x + rk[None, :]
    w_ptrs = W + rn[:, None].to(tl.int64) * K + rk[None, :]
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for _ in range(0, k_per_split, BLOCK_K):  # the config divides K: no masks on the weight
        x = tl.load(x_ptrs, mask=row_ok[:, None], other=0.0)
        acc = tl.dot(x, tl.trans(tl.load(w_ptrs)), acc)
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K
    out_ptrs = Out + rm[:, None] * stride_o + rn[None, :]
    if splits == 1:
        _finish(out_ptrs, acc, B, rn, row_ok, HAS_BIAS)
    else:
        tile = rm[:, None] * N + rn[None, :]
        tl.store(Partial + pid_k * BLOCK_M * N + tile, acc, mask=row_ok[:, None])
        tl.debug_barrier()  # all of this program's partial is written before it is counted
        if tl.atomic_add(Count + pid_n, 1, sem="acq_rel", scope="gpu") == splits - 1:
            total = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
            for s in range(0, splits):  # split order: the sum does not depend on who came last
                part = Partial + s * BLOCK_M * N + tile
                total += tl.load(part, mask=row_ok[:, None], other=0.0, cache_modifier=".cg")
            _finish(out_ptrs, total, B, rn, row_ok, HAS_BIAS)
            tl.store(Count + pid_n, 0)  # re-armed for the next launch


def skinny_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    config: SkinnyConfig,
    workspace: Workspace,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for ``x`` of at most 16 rows (see the module docstring),
    into ``out`` [M, N] when given."""
    m, k = x.shape
    n = weight.shape[0]
    assert m <= MAX_ROWS and config.fits(n, k) and weight.is_contiguous()
    assert n <= workspace.max_n and config.split <= workspace.max_split
    if x.stride(1) != 1:
        x = x.contiguous()
    if out is None:
        out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    assert out.shape == (m, n) and out.stride(1) == 1
    _skinny_kernel[(n // config.block_n, config.split)](
        x,
        weight,
        out if bias is None else bias,  # never read without a bias
        out,
        workspace.partial,
        workspace.count,
        m,
        n,
        k,
        x.stride(0),
        out.stride(0),
        k // config.split,
        HAS_BIAS=bias is not None,
        BLOCK_M=BLOCK_M,
        BLOCK_N=config.block_n,
        BLOCK_K=config.block_k,
        num_warps=config.num_warps,
        num_stages=config.num_stages,
    )
    return out
