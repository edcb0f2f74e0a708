"""Triton kernels for the elementwise ops around the matmuls: RMSNorm (with the residual add),
SiLU-and-multiply, and attention's prologue (split qkv, per-head q/k RMSNorm, rotary), which
can also write this step's K/V to the paged cache (``qk_norm_rope_store_kv``).

Contract: each function takes the arguments of its torch twin (``layers/norm.py``,
``layers/activation.py``, ``models/decoder.py:qk_norm_rope``) and returns what it returns, rounded
the same way: math in float32, a result in the model dtype wherever eager torch rounds to it
(after the residual add, after the norm, before the weight multiply, after SiLU). The torch
functions are the oracle (``tests/layers/test_elementwise_kernels.py``; on CPU under
TRITON_INTERPRET=1). ``qk_norm_rope_store_kv`` has no torch twin: it writes the triton attention
backend's cache layout, and equals ``qk_norm_rope`` then ``attention/triton_kernels.py:
store_kvcache`` bit for bit (the fused path is chosen in ``layers/fusion.py``).

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
def _head_rms_norm(x1, x2, W, half, mask, eps, HEAD_DIM: tl.constexpr):
    """rms_norm over one head's HEAD_DIM values (its two halves), as norm.py computes it."""
    dtype = x1.dtype
    w1 = tl.load(W + half, mask=mask, other=0.0)
    w2 = tl.load(W + HEAD_DIM // 2 + half, mask=mask, other=0.0)
    f1, f2 = x1.to(tl.float32), x2.to(tl.float32)
    inv_rms = tl.rsqrt((tl.sum(f1 * f1, 0) + tl.sum(f2 * f2, 0)) / HEAD_DIM + eps)
    y1 = (w1.to(tl.float32) * (f1 * inv_rms).to(dtype).to(tl.float32)).to(dtype)
    y2 = (w2.to(tl.float32) * (f2 * inv_rms).to(dtype).to(tl.float32)).to(dtype)
    return y1, y2


@triton.jit
def _store_halves(dst, o1, o2, half, mask, HEAD_DIM: tl.constexpr):
    ty = dst.dtype.element_ty
    tl.store(dst + half, o1.to(ty), mask=mask)
    tl.store(dst + HEAD_DIM // 2 + half, o2.to(ty), mask=mask)


@triton.jit
def _qk_norm_rope_kernel(
    QKV, Pos, QW, KW, Cos, Sin, QOut, KOut, KCache, VCache, Slots,
    stride_qkv, stride_qo, stride_ko, stride_cos, stride_cs, stride_ch, eps,
    NUM_HEADS: tl.constexpr, NUM_KV_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr,
    HALF_PAD: tl.constexpr, HAS_NORM: tl.constexpr, STORE_KV: tl.constexpr,
):  # fmt: skip
    """One program per (token, head): the q heads, then the k heads, then (STORE_KV only) the v
    heads; in qkv, head h of any of them starts at column h * HEAD_DIM (q | k | v).

    STORE_KV: k (normed, rotated) and v go to the token's slot of the paged caches, and nowhere
    else; a negative slot stores nothing. q is computed the same way either way."""
    tok, head = tl.program_id(0).to(tl.int64), tl.program_id(1)
    half = tl.arange(0, HALF_PAD)
    mask = half < HEAD_DIM // 2
    src = QKV + tok * stride_qkv + head * HEAD_DIM
    x1 = tl.load(src + half, mask=mask, other=0.0)
    x2 = tl.load(src + HEAD_DIM // 2 + half, mask=mask, other=0.0)
    if STORE_KV:  # where this token's k and v go; int64: slot * stride passes 2**31
        slot = tl.load(Slots + tok).to(tl.int64)
        # `half * 0 + slot`: a block compare (mask & a scalar compare is a mask dtype the
        # interpreter rejects)
        kv_mask = mask & (half * 0 + slot >= 0)
        kv_head = (head - NUM_HEADS) % NUM_KV_HEADS  # of a k or a v head; q heads never use it
        cache_off = slot * stride_cs + kv_head * stride_ch
    if head >= NUM_HEADS + NUM_KV_HEADS:  # a v head (launched with STORE_KV only): a copy
        if STORE_KV:
            _store_halves(VCache + cache_off, x1, x2, half, kv_mask, HEAD_DIM)
    else:
        dtype = x1.dtype
        if HAS_NORM:
            if head < NUM_HEADS:
                x1, x2 = _head_rms_norm(x1, x2, QW, half, mask, eps, HEAD_DIM)
            else:
                x1, x2 = _head_rms_norm(x1, x2, KW, half, mask, eps, HEAD_DIM)
        # rotary, NeoX layout: the two halves rotate together (rotary.py:_rotate)
        pos = tl.load(Pos + tok).to(tl.int64)
        cos = tl.load(Cos + pos * stride_cos + half, mask=mask, other=0.0)
        sin = tl.load(Sin + pos * stride_cos + half, mask=mask, other=0.0)
        f1, f2 = x1.to(tl.float32), x2.to(tl.float32)
        o1 = (f1 * cos - f2 * sin).to(dtype)
        o2 = (f2 * cos + f1 * sin).to(dtype)
        if head < NUM_HEADS:
            _store_halves(QOut + tok * stride_qo + head * HEAD_DIM, o1, o2, half, mask, HEAD_DIM)
        elif STORE_KV:
            _store_halves(KCache + cache_off, o1, o2, half, kv_mask, HEAD_DIM)
        else:
            dst = KOut + tok * stride_ko + (head - NUM_HEADS) * HEAD_DIM
            _store_halves(dst, o1, o2, half, mask, HEAD_DIM)


def _launch_prologue(qkv, positions, q_weight, k_weight, eps, cos, sin, q, k, caches, slots):
    """``caches`` None: k goes to ``k``; else (k_cache, v_cache): k and v go to their slots."""
    assert qkv.stride(-1) == 1 and cos.is_contiguous() and sin.is_contiguous()
    t, num_heads, head_dim = q.shape
    num_kv_heads = k.shape[1] if caches is None else caches[0].shape[2]
    if not t:
        return
    has_norm, store = q_weight is not None, caches is not None
    k_cache, v_cache = caches if store else (qkv, qkv)  # unread without STORE_KV
    _qk_norm_rope_kernel[(t, num_heads + num_kv_heads * (2 if store else 1))](
        qkv, positions, q_weight if has_norm else qkv, k_weight if has_norm else qkv,
        cos, sin, q, k, k_cache, v_cache, slots if store else positions,
        qkv.stride(0), q.stride(0), k.stride(0), cos.stride(0),
        k_cache.stride(1) if store else 0, k_cache.stride(2) if store else 0, eps,
        NUM_HEADS=num_heads, NUM_KV_HEADS=num_kv_heads, HEAD_DIM=head_dim,
        HALF_PAD=triton.next_power_of_2(head_dim // 2), HAS_NORM=has_norm, STORE_KV=store,
        num_warps=1,
    )  # fmt: skip


def qk_norm_rope(
    qkv, positions, q_weight, k_weight, eps, cos, sin, num_heads, num_kv_heads, head_dim
):
    """[T, (H + 2 Hkv) D] -> q [T, H, D], k and v [T, Hkv, D]: q and k normed (when the weights
    are given) and rotated, v a view of qkv, exactly as ``models/decoder.py:qk_norm_rope``."""
    t = qkv.shape[0]
    q = torch.empty((t, num_heads, head_dim), dtype=qkv.dtype, device=qkv.device)
    k = torch.empty((t, num_kv_heads, head_dim), dtype=qkv.dtype, device=qkv.device)
    v = qkv[:, (num_heads + num_kv_heads) * head_dim :].view(-1, num_kv_heads, head_dim)
    _launch_prologue(qkv, positions, q_weight, k_weight, eps, cos, sin, q, k, None, None)
    return q, k, v


def qk_norm_rope_store_kv(
    qkv, positions, q_weight, k_weight, eps, cos, sin, num_heads, num_kv_heads, head_dim,
    k_cache, v_cache, slot_mapping,
):  # fmt: skip
    """``qk_norm_rope`` and the KV store in one launch: returns q [T, H, D] (the same values as
    ``qk_norm_rope``'s), and writes token n's k (normed, rotated) and v to slot
    ``slot_mapping[n]`` of ``k_cache`` / ``v_cache`` as ``attention/triton_kernels.py:
    store_kvcache`` does (contiguous ``[blocks, block_size, Hkv, D]``; a negative slot: none)."""
    t = qkv.shape[0]
    assert k_cache.shape[2:] == (num_kv_heads, head_dim) and v_cache.shape == k_cache.shape, (
        f"caches {tuple(k_cache.shape)}, {tuple(v_cache.shape)} do not hold "
        f"[*, *, {num_kv_heads}, {head_dim}] tokens"
    )
    assert k_cache.is_contiguous() and v_cache.is_contiguous(), "KV caches must be contiguous"
    assert slot_mapping.shape == (t,), f"slot_mapping {tuple(slot_mapping.shape)} for {t} tokens"
    q = torch.empty((t, num_heads, head_dim), dtype=qkv.dtype, device=qkv.device)
    caches = (k_cache, v_cache)
    _launch_prologue(qkv, positions, q_weight, k_weight, eps, cos, sin, q, q, caches, slot_mapping)
    return q
