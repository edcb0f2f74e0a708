"""The planner (layers/skinny_plan.py): a layer gets the skinny-GEMM kernel exactly where it was
timed faster than cuBLAS by the margin, and planned layers still compute their product.

On CPU (TRITON_INTERPRET=1) with a fake timer that reads which kernel ran, so the choosing logic
is checked on set times; on the GPU with the real timer (CUDA graphs) at real Qwen3-0.6B shapes.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede the first `import triton`
pytest.importorskip("triton")

from nanovllm.layers import skinny_gemm as sg  # noqa: E402
from nanovllm.layers import skinny_plan as sp  # noqa: E402
from nanovllm.layers.linear import ColumnParallelLinear, RowParallelLinear  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    assert not out.isnan().any()
    return float((out.double() - ref).norm() / ref.norm())


def test_the_kernel_is_chosen_only_where_it_wins_by_the_margin(monkeypatch):
    monkeypatch.setattr(sg, "PROGRAMS", (1, 1024))  # tiny shapes: any program count will do
    layers = [ColumnParallelLinear(256, 64).to(DEVICE) for _ in range(2)]
    odd = RowParallelLinear(100, 40).to(DEVICE)  # no config fits: cuBLAS, reported as such
    for layer in [*layers, odd]:
        layer.weight.data.normal_(0, 0.05)
    best = sg.SkinnyConfig(32, 128, 2)
    assert best in sg.candidates(64, 256)
    kernel_runs, cublas_rows = [], []
    real_kernel, real_linear = sg.skinny_linear, torch.nn.functional.linear
    monkeypatch.setattr(
        sg, "skinny_linear", lambda *a, **kw: kernel_runs.append(a[3]) or real_kernel(*a, **kw)
    )
    monkeypatch.setattr(
        torch.nn.functional,
        "linear",
        lambda x, *a: cublas_rows.append(len(x)) or real_linear(x, *a),
    )
    cublas_s = {2: 1.0, 4: 2.0, 8: 1.02}  # the best config takes 1.0: it wins at 4 rows only

    def timer(fn):  # seconds by what ran: every config 1.5 but the best, cuBLAS by row count
        kernel_runs.clear(), cublas_rows.clear()
        fn()
        return (1.0 if kernel_runs[0] == best else 1.5) if kernel_runs else cublas_s[cublas_rows[0]]

    report = sp.plan_linears([*layers, odd], [8, 2, 4, 32], timer=timer, dtypes=(torch.float32,))
    assert [(r.n, r.rows, r.config) for r in report] == [
        (64, 2, None), (64, 4, str(best)), (64, 8, None),
        (40, 2, None), (40, 4, None), (40, 8, None),
    ]  # fmt: skip
    assert report[3].kernel_us is None and "no config fits" in str(report[3])
    assert all(layer.skinny is layers[0].skinny for layer in layers) and odd.skinny is None
    assert layers[0].skinny.configs == {4: best}
    kernel_runs.clear()
    x = torch.randn(4, 256, device=DEVICE)
    bound = 3e-3 if DEVICE.type == "cuda" else 1e-4  # a GPU's tl.dot takes float32 as TF32
    assert rel_error(layers[1](x), x.double() @ layers[1].weight.double().T) < bound
    assert kernel_runs == [best]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_plan_on_the_gpu():
    """Real Qwen3-0.6B shapes, four layers each: a kernel only where it timed faster, and the
    planned layers still compute the product."""
    torch.manual_seed(0)
    shapes = [(1024, 4096), (2048, 1024)]  # (in, out): qkv-like, o_proj-like (split-K)
    layers = [
        ColumnParallelLinear(i, o).to(DEVICE, torch.bfloat16) for i, o in shapes for _ in range(4)
    ]
    for layer in layers:
        layer.weight.data.normal_(0, 0.02)
    report = sp.plan_linears(layers, [2, 16])
    assert {(r.n, r.k, r.rows) for r in report} == {
        (4096, 1024, 2), (4096, 1024, 16), (1024, 2048, 2), (1024, 2048, 16)
    }  # fmt: skip
    for row in report:
        assert row.kernel_us is not None and row.cublas_us > 0
        assert (row.config is not None) == (row.kernel_us < (1 - sp.MARGIN) * row.cublas_us)
    for layer in layers:
        for m in (2, 16):
            x = torch.randn(m, layer.weight.shape[1], device=DEVICE, dtype=torch.bfloat16)
            assert rel_error(layer(x), x.double() @ layer.weight.double().T) < 1e-2
