"""Triton kernels for the elementwise ops around the matmuls: RMSNorm (with the residual add),
SiLU-and-multiply, and attention's prologue (split qkv, per-head q/k RMSNorm, rotary).

Contract: each function takes the arguments of its torch twin (``layers/norm.py``,
``layers/activation.py``, ``models/decoder.py:qk_norm_rope``) and returns what it returns, rounded
the same way: math in float32, a result in the model dtype wherever eager torch rounds to it
(after the residual add, after the norm, before the weight multiply, after SiLU). The torch
functions are the oracle (``tests/layers/test_elementwise_kernels.py``; on CPU under
TRITON_INTERPRET=1).

Each op is one launch where eager torch launches four to eight, and none compiles anything
beyond its own kernel: sizes that change from step to step are runtime arguments, so one variant
serves every batch size (prefill, decode, every CUDA-graph bucket).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# ------------------------------------------------------------------------------------ RMSNorm


@triton.jit
def _rms_norm_kernel(
    X, R, W, Out, ResOut, stride_x, stride_r, stride_o, stride_ro, eps,
    N: tl.constexpr, BLOCK: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < N
    x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0)
    if HAS_RESIDUAL:  # x + residual, in the model dtype, is also the next residual
        r = tl.load(R + row * stride_r + cols, mask=mask, other=0.0)
        x = (x.to(tl.float32) + r.to(tl.float32)).to(X.dtype.element_ty)
        tl.store(ResOut + row * stride_ro + cols, x, mask=mask)
    xf = x.to(tl.float32)
    inv_rms = tl.rsqrt(tl.sum(xf * xf, 0) / N + eps)
    y = (xf * inv_rms).to(X.dtype.element_ty)
    w = tl.load(W + cols, mask=mask, other=0.0)
    tl.store(Out + row * stride_o + cols, (w.to(tl.float32) * y.to(tl.float32)).to(
        Out.dtype.element_ty), mask=mask)  # fmt: skip


def _rows(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[-1]
    return x.reshape(-1, n) if x.stride(-1) == 1 else x.contiguous().view(-1, n)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return _launch_rms_norm(x, None, weight, eps)[0]


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float):
    return _launch_rms_norm(x, residual, weight, eps)


def _launch_rms_norm(x, residual, weight, eps):
    """(norm(x [+ residual]), x + residual or None), one program per row."""
    x2 = _rows(x)
    r2 = x2 if residual is None else _rows(residual)  # unread without a residual
    out = torch.empty_like(x2)
    res_out = out if residual is None else torch.empty_like(x2)  # unwritten without one
    if x2.shape[0]:
        n = x2.shape[1]
        _rms_norm_kernel[(x2.shape[0],)](
            x2, r2, weight, out, res_out, x2.stride(0), r2.stride(0), out.stride(0),
            res_out.stride(0), eps, N=n, BLOCK=triton.next_power_of_2(n),
            HAS_RESIDUAL=residual is not None, num_warps=1 if n <= 256 else 4 if n <= 4096 else 8,
        )  # fmt: skip
    return out.view(x.shape), None if residual is None else res_out.view(x.shape)


# ------------------------------------------------------------------------------- SiLU-and-mul

_SILU_BLOCK = 1024


@triton.jit
def _silu_and_mul_kernel(X, Out, stride_x, stride_o, N: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < N
    gate = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(X + row * stride_x + N + cols, mask=mask, other=0.0).to(tl.float32)
    silu = (gate / (1.0 + tl.exp(-gate))).to(X.dtype.element_ty)  # F.silu rounds to the dtype
    out = (silu.to(tl.float32) * up).to(Out.dtype.element_ty)
    tl.store(Out + row * stride_o + cols, out, mask=mask)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """``[..., 2n]`` (gate | up) -> ``[..., n]``."""
    x2 = _rows(x)
    n = x2.shape[1] // 2
    out = torch.empty((x2.shape[0], n), dtype=x.dtype, device=x.device)
    if x2.shape[0]:
        grid = (x2.shape[0], triton.cdiv(n, _SILU_BLOCK))
        _silu_and_mul_kernel[grid](x2, out, x2.stride(0), out.stride(0), N=n, BLOCK=_SILU_BLOCK)
    return out.view(*x.shape[:-1], n)


# --------------------------------------------------------------------- attention's prologue


@triton.jit
def _qk_norm_rope_kernel(
    QKV, Pos, QW, KW, Cos, Sin, QOut, KOut,
    stride_qkv, stride_qo, stride_ko, stride_cos, eps,
    NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, HALF_PAD: tl.constexpr,
    HAS_NORM: tl.constexpr,
):  # fmt: skip
    """One program per (token, head) of q and k: q heads first, then k heads; in qkv, head h of
    either starts at column h * HEAD_DIM (k follows q)."""
    tok, head = tl.program_id(0).to(tl.int64), tl.program_id(1)
    half = tl.arange(0, HALF_PAD)
    mask = half < HEAD_DIM // 2
    src = QKV + tok * stride_qkv + head * HEAD_DIM
    x1 = tl.load(src + half, mask=mask, other=0.0)
    x2 = tl.load(src + HEAD_DIM // 2 + half, mask=mask, other=0.0)
    dtype = x1.dtype
    if HAS_NORM:  # rms_norm over the head's HEAD_DIM values, as norm.py computes it
        f1, f2 = x1.to(tl.float32), x2.to(tl.float32)
        inv_rms = tl.rsqrt((tl.sum(f1 * f1, 0) + tl.sum(f2 * f2, 0)) / HEAD_DIM + eps)
        if head < NUM_HEADS:
            w1 = tl.load(QW + half, mask=mask, other=0.0)
            w2 = tl.load(QW + HEAD_DIM // 2 + half, mask=mask, other=0.0)
        else:
            w1 = tl.load(KW + half, mask=mask, other=0.0)
            w2 = tl.load(KW + HEAD_DIM // 2 + half, mask=mask, other=0.0)
        x1 = (w1.to(tl.float32) * (f1 * inv_rms).to(dtype).to(tl.float32)).to(dtype)
        x2 = (w2.to(tl.float32) * (f2 * inv_rms).to(dtype).to(tl.float32)).to(dtype)
    # rotary, NeoX layout: the two halves rotate together (rotary.py:_rotate)
    pos = tl.load(Pos + tok).to(tl.int64)
    cos = tl.load(Cos + pos * stride_cos + half, mask=mask, other=0.0)
    sin = tl.load(Sin + pos * stride_cos + half, mask=mask, other=0.0)
    f1, f2 = x1.to(tl.float32), x2.to(tl.float32)
    o1 = (f1 * cos - f2 * sin).to(dtype)
    o2 = (f2 * cos + f1 * sin).to(dtype)
    if head < NUM_HEADS:
        dst = QOut + tok * stride_qo + head * HEAD_DIM
    else:
        dst = KOut + tok * stride_ko + (head - NUM_HEADS) * HEAD_DIM
    tl.store(dst + half, o1, mask=mask)
    tl.store(dst + HEAD_DIM // 2 + half, o2, mask=mask)


def qk_norm_rope(
    qkv, positions, q_weight, k_weight, eps, cos, sin, num_heads, num_kv_heads, head_dim
):
    """[T, (H + 2 Hkv) D] -> q [T, H, D], k and v [T, Hkv, D]: q and k normed (when the weights
    are given) and rotated, v a view of qkv, exactly as ``models/decoder.py:qk_norm_rope``."""
    assert qkv.stride(-1) == 1 and cos.is_contiguous() and sin.is_contiguous()
    t = qkv.shape[0]
    q = torch.empty((t, num_heads, head_dim), dtype=qkv.dtype, device=qkv.device)
    k = torch.empty((t, num_kv_heads, head_dim), dtype=qkv.dtype, device=qkv.device)
    v = qkv[:, (num_heads + num_kv_heads) * head_dim :].view(-1, num_kv_heads, head_dim)
    if t:
        has_norm = q_weight is not None
        _qk_norm_rope_kernel[(t, num_heads + num_kv_heads)](
            qkv, positions, q_weight if has_norm else qkv, k_weight if has_norm else qkv,
            cos, sin, q, k, qkv.stride(0), q.stride(0), k.stride(0), cos.stride(0), eps,
            NUM_HEADS=num_heads, HEAD_DIM=head_dim,
            HALF_PAD=triton.next_power_of_2(head_dim // 2), HAS_NORM=has_norm, num_warps=1,
        )  # fmt: skip
    return q, k, v
