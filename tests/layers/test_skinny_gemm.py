"""The skinny-GEMM kernel (layers/skinny_gemm.py) against a float64 reference, and the linear
layers' dispatch to it.

Runs on CPU under TRITON_INTERPRET=1 (set here when no GPU is visible) on small shapes, in float32
and float16 (the interpreter multiplies bfloat16 operands as their integer bit patterns, so
bfloat16 is checked on the GPU only), and on the GPU compiled. Outputs start poisoned (NaN) and so
do the workspace's partial sums, so an unwritten row or a partial read before it was written fails.
The planner that chooses between the kernel and cuBLAS: tests/layers/test_skinny_plan.py.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede the first `import triton`
pytest.importorskip("triton")

from nanovllm.layers import skinny_gemm as sg  # noqa: E402
from nanovllm.layers.linear import ColumnParallelLinear, RowParallelLinear  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if DEVICE.type == "cuda" else [])
# float32 is TF32 in the tensor cores on the GPU (about 3e-4); half types round the output once
TOLERANCE = {torch.float32: 1e-3, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    assert not out.isnan().any(), "NaN in the output: an element was not written"
    return float((out.double() - ref).norm() / ref.norm())


def run(m, n, k, config, dtype, bias=True, gen_seed=0):
    gen = torch.Generator().manual_seed(gen_seed)
    wide = torch.randn(m, k + 32, generator=gen)
    x = wide[:, 16 : 16 + k].to(DEVICE, dtype)  # rows strided wider than K
    w = (torch.randn(n, k, generator=gen) / k**0.5).to(DEVICE, dtype)
    b = torch.randn(n, generator=gen).to(DEVICE, dtype) if bias else None
    ws = sg.Workspace(DEVICE, max_n=n)
    ws.partial.fill_(float("nan"))
    out = torch.full((m, n), float("nan"), dtype=dtype, device=DEVICE)
    sg.skinny_linear(x, w, b, config, ws, out=out)
    ref = x.double() @ w.double().T + (0 if b is None else b.double())
    return out, ref, ws


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "config", [sg.SkinnyConfig(32, 64, 1), sg.SkinnyConfig(16, 64, 2), sg.SkinnyConfig(16, 32, 4)]
)
@pytest.mark.parametrize("m", [1, 5, 16])
def test_kernel_matches_the_float64_product(m, config, dtype):
    out, ref, ws = run(m, 64, 256, config, dtype)
    assert rel_error(out, ref) < TOLERANCE[dtype]
    assert int(ws.count.abs().sum()) == 0  # every tile's counter re-armed


def test_without_bias_and_repeatable_bit_for_bit():
    config = sg.SkinnyConfig(16, 32, 4)
    first, ref, _ = run(7, 32, 256, config, torch.float32, bias=False)
    again, _, _ = run(7, 32, 256, config, torch.float32, bias=False)
    assert rel_error(first, ref) < TOLERANCE[torch.float32]
    assert torch.equal(first, again)  # partials summed in split order, whoever came last


def test_candidates_fit_and_cover_the_gpu():
    for n, k in [(4096, 1024), (1024, 2048), (6144, 1024), (1024, 3072)]:  # Qwen3-0.6B's layers
        cands = sg.candidates(n, k)
        assert cands and all(c.fits(n, k) for c in cands)
        assert all(96 <= n // c.block_n * c.split <= 1024 for c in cands)
    assert sg.candidates(100, 1024) == [] and sg.candidates(4096, 1000) == []


@pytest.mark.parametrize("layer_class", [ColumnParallelLinear, RowParallelLinear])
def test_linear_layers_follow_their_plan(layer_class, monkeypatch):
    torch.manual_seed(0)
    layer = layer_class(256, 64, bias=False).to(DEVICE)
    layer.weight.data.normal_(0, 0.05)
    calls = []
    real = sg.skinny_linear
    monkeypatch.setattr(sg, "skinny_linear", lambda *a, **kw: calls.append(a[3]) or real(*a, **kw))
    config = sg.SkinnyConfig(16, 64, 2)
    layer.skinny = sg.SkinnyPlan({4: config}, sg.Workspace(DEVICE, max_n=64))
    x4, x3 = torch.randn(4, 256, device=DEVICE), torch.randn(3, 256, device=DEVICE)
    torch.testing.assert_close(layer(x4), F.linear(x4, layer.weight), atol=1e-3, rtol=1e-3)
    assert calls == [config]  # 4 rows: the planned kernel
    torch.testing.assert_close(layer(x3), F.linear(x3, layer.weight))
    assert calls == [config]  # 3 rows: no plan, cuBLAS (F.linear)
