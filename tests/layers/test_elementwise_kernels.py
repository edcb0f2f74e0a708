"""The elementwise Triton kernels (RMSNorm with the residual add, SiLU-and-mul, attention's
prologue) against their torch twins, which are the oracle: the same arguments, the same outputs.

Runs on CPU under TRITON_INTERPRET=1 (set here when no GPU is visible) on small shapes, and on the
GPU as compiled kernels. In float32 the kernels agree with the torch code to rounding (the
reductions sum in another order); in bfloat16 the results are rounded where eager torch rounds,
so they stay within one bf16 step of it (the interpreter's bf16 casts truncate where the GPU
rounds, so there even the residual add is one step off).
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede the first `import triton`
pytest.importorskip("triton")

from nanovllm.layers import activation, norm
from nanovllm.layers import elementwise_kernels as ek
from nanovllm.layers.rotary import RotaryEmbedding
from nanovllm.models import decoder

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"  # its bf16 casts truncate: one ulp off
TOLERANCE = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}
DTYPES = [torch.float32, torch.bfloat16]


def _randn(*shape, dtype):
    return torch.randn(*shape, device=DEVICE).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", [64, 96])  # a power of two, and one the block pads
def test_rms_norm_and_residual_add(dtype, hidden):
    x, residual = _randn(7, hidden, dtype=dtype), _randn(7, hidden, dtype=dtype)
    weight = (1 + 0.1 * _randn(hidden, dtype=torch.float32)).to(dtype)
    torch.testing.assert_close(
        ek.rms_norm(x, weight, 1e-6), norm.rms_norm(x, weight, 1e-6), **TOLERANCE[dtype]
    )
    out, res = ek.add_rms_norm(x, residual, weight, 1e-6)
    want_out, want_res = norm.add_rms_norm(x, residual, weight, 1e-6)
    exact = dict(atol=0, rtol=0) if not INTERPRETED else TOLERANCE[dtype]
    torch.testing.assert_close(res, want_res, **exact)  # one rounded add: exact on a GPU
    torch.testing.assert_close(out, want_out, **TOLERANCE[dtype])
    assert out.dtype == res.dtype == dtype and out.shape == x.shape


def test_rms_norm_of_no_rows_and_of_a_strided_view():
    x = _randn(0, 32, dtype=torch.float32)
    assert ek.rms_norm(x, torch.ones(32, device=DEVICE), 1e-6).shape == (0, 32)
    wide = _randn(5, 64, dtype=torch.float32)
    view = wide[:, 16:48]  # rows 64 apart: not contiguous
    weight = torch.rand(32, device=DEVICE)
    torch.testing.assert_close(ek.rms_norm(view, weight, 1e-5), norm.rms_norm(view, weight, 1e-5))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [48, 1100])  # one block, and two with a ragged tail
def test_silu_and_mul(dtype, n):
    x = 3 * _randn(5, 2 * n, dtype=dtype)
    got, want = ek.silu_and_mul(x), activation.silu_and_mul(x)
    assert got.shape == want.shape == (5, n)
    torch.testing.assert_close(got, want, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("qk_norm", [True, False])
@pytest.mark.parametrize("head_dim", [32, 24])  # 24: half of it (12) pads to 16
def test_qk_norm_rope_prologue(dtype, qk_norm, head_dim):
    heads, kv_heads, tokens = 4, 2, 6
    qkv = _randn(tokens, (heads + 2 * kv_heads) * head_dim, dtype=dtype)
    positions = torch.tensor([0, 1, 5, 17, 3, 63], device=DEVICE)
    rotary = RotaryEmbedding(head_dim, 64, 10000.0).to(DEVICE)
    q_w = (1 + 0.1 * _randn(head_dim, dtype=torch.float32)).to(dtype) if qk_norm else None
    k_w = (1 + 0.1 * _randn(head_dim, dtype=torch.float32)).to(dtype) if qk_norm else None
    args = (qkv, positions, q_w, k_w, 1e-6, rotary.cos, rotary.sin, heads, kv_heads, head_dim)
    got, want = ek.qk_norm_rope(*args), decoder.qk_norm_rope(*args)
    for name, g, w in zip("qkv", got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        torch.testing.assert_close(g, w, **TOLERANCE[dtype], msg=lambda m, n=name: f"{n}: {m}")
    assert got[2].data_ptr() == want[2].data_ptr()  # v stays a view of qkv


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("qk_norm", [True, False])
@pytest.mark.parametrize(
    "block_size, heads, kv_heads, head_dim",
    [(16, 4, 2, 32), (32, 2, 2, 24), (64, 4, 1, 32)],  # GQA, MHA with a padded half, MQA
)
def test_prologue_with_the_kv_store(dtype, qk_norm, block_size, heads, kv_heads, head_dim):
    """qk_norm_rope_store_kv = qk_norm_rope, then store_kvcache: q bit for bit, the caches bit
    for bit (the same kernel math writes k; v is a copy), and a slot of -1 stores nothing."""
    from nanovllm.attention.triton_kernels import store_kvcache

    tokens, num_blocks = 7, 3
    qkv = _randn(tokens, (heads + 2 * kv_heads) * head_dim, dtype=dtype)
    positions = torch.tensor([0, 1, 5, 17, 3, 63, 40], device=DEVICE)
    # a prefill run, a skipped (cached-prefix or padding) token, the last slot, a token of block 0
    slots = torch.tensor([5, 6, -1, 7, num_blocks * block_size - 1, -1, block_size], device=DEVICE)
    rotary = RotaryEmbedding(head_dim, 64, 10000.0).to(DEVICE)
    q_w = (1 + 0.1 * _randn(head_dim, dtype=torch.float32)).to(dtype) if qk_norm else None
    k_w = (1 + 0.1 * _randn(head_dim, dtype=torch.float32)).to(dtype) if qk_norm else None
    args = (qkv, positions, q_w, k_w, 1e-6, rotary.cos, rotary.sin, heads, kv_heads, head_dim)
    shape = (num_blocks, block_size, kv_heads, head_dim)
    k_cache, v_cache = _randn(*shape, dtype=dtype), _randn(*shape, dtype=dtype)
    want_k_cache, want_v_cache = k_cache.clone(), v_cache.clone()

    q = ek.qk_norm_rope_store_kv(*args, k_cache, v_cache, slots)
    want_q, k, v = ek.qk_norm_rope(*args)
    store_kvcache(k, v, want_k_cache, want_v_cache, slots)
    exact = dict(atol=0, rtol=0)
    torch.testing.assert_close(q, want_q, **exact)
    torch.testing.assert_close(k_cache, want_k_cache, **exact)
    torch.testing.assert_close(v_cache, want_v_cache, **exact)
    # and the oracle agrees with the torch twin (so the caches hold the right values, not only
    # the same ones), with every slot not named by slot_mapping untouched
    _, k_ref, v_ref = decoder.qk_norm_rope(*args)
    keep = slots >= 0
    flat = (-1, kv_heads, head_dim)
    torch.testing.assert_close(k_cache.view(flat)[slots[keep]], k_ref[keep], **TOLERANCE[dtype])
    torch.testing.assert_close(v_cache.view(flat)[slots[keep]], v_ref[keep], **exact)
    untouched = torch.ones(num_blocks * block_size, dtype=torch.bool, device=DEVICE)
    untouched[slots[keep]] = False
    assert torch.equal(k_cache.view(flat)[untouched], want_k_cache.view(flat)[untouched])


def test_prologue_with_the_kv_store_of_no_tokens():
    cache = torch.zeros(2, 16, 1, 32, device=DEVICE)
    qkv = torch.zeros(0, 3 * 32, device=DEVICE)
    rotary = RotaryEmbedding(32, 64, 10000.0).to(DEVICE)
    none = torch.zeros(0, dtype=torch.int64, device=DEVICE)
    args = (qkv, none, None, None, 1e-6, rotary.cos, rotary.sin, 1, 1, 32)
    assert ek.qk_norm_rope_store_kv(*args, cache, cache.clone(), none).shape == (0, 1, 32)
    assert not cache.any()


def test_every_op_has_a_kernel_twin():
    """layers/fusion.py finds each kernel by its torch function's name."""
    from nanovllm.layers.fusion import elementwise_op

    for fn in (norm.rms_norm, norm.add_rms_norm, activation.silu_and_mul, decoder.qk_norm_rope):
        kernel = elementwise_op(fn, "triton")
        assert kernel is not fn and kernel.__module__ == ek.__name__


def test_the_fused_kv_store_is_chosen_only_with_triton_on_both_sides():
    from nanovllm.layers.fusion import kv_store_op

    assert kv_store_op("triton", "triton", True) is ek.qk_norm_rope_store_kv
    for elsewhere in [
        ("triton", "triton", False),  # Config.fused_kv_store=False
        ("torch", "triton", True),
        ("compile", "triton", True),
        ("triton", "torch_ref", True),
        ("torch", "cpu_sdpa", True),
    ]:
        assert kv_store_op(*elsewhere) is None, elsewhere
