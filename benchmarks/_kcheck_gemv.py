"""The skinny-GEMM section of benchmarks/gpu_kernels_check.py: layers/skinny_gemm.py against a
float64 product and against cuBLAS, at Qwen3-0.6B's four decoder projections.

For each shape, LAYERS weight matrices (as many as the model has: together far larger than the
L2 cache), and each row count of ROWS:
- checks: every candidate config (``skinny_gemm.candidates``) on fresh random rows, output and
  workspace poisoned with NaN, relative error to the float64 product < 1e-2 (bf16 output);
- timing: cuBLAS (``F.linear``) and every candidate, each as a CUDA graph running all LAYERS
  layers in turn (what a decode step does), per layer and as TB/s of weight read;
- a wider sweep at 1 and 16 rows (block sizes, warps, stages, splits), to see whether the
  planner's candidate list misses a faster config;
- the planner itself (``skinny_plan.plan_linears``) on those layers: what it picks, and its time.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from _kcheck import DEVICE, DRY, Report, graph_time, rel_error

from nanovllm.layers import skinny_gemm as sg
from nanovllm.layers import skinny_plan as sp
from nanovllm.layers.linear import ColumnParallelLinear

# (out N, in K) of Qwen3-0.6B's projections; the dry run's are tiny (the interpreter)
SHAPES = (
    {"qkv": (128, 256), "o": (64, 512)}
    if DRY
    else {"qkv": (4096, 1024), "o": (1024, 2048), "gate_up": (6144, 1024), "down": (1024, 3072)}
)
LAYERS = 2 if DRY else 28
ROWS = (1, 2, 4) if DRY else (1, 2, 4, 8, 16)
DTYPE = torch.float16 if DRY else torch.bfloat16  # the interpreter cannot multiply bf16
SWEEP = [(bn, bk, 4, 4) for bn in (16, 32, 64, 128) for bk in (64, 128, 256, 512)] + [
    (64, 128, 8, 4), (64, 128, 4, 3), (64, 128, 4, 5), (32, 256, 4, 3), (32, 128, 2, 4),
]  # fmt: skip
SWEEP_PROGRAMS = (32, 2048)


def _weights(n: int, k: int, gen: torch.Generator) -> list[torch.Tensor]:
    return [
        (0.02 * torch.randn(n, k, generator=gen, device=DEVICE)).to(DTYPE) for _ in range(LAYERS)
    ]


def _x(m: int, k: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(m, k, generator=gen, device=DEVICE).to(DTYPE)


def check_configs(report, name, weights, ws, gen) -> None:
    n, k = weights[0].shape
    worst, worst_cublas, count = 0.0, 0.0, 0
    for config in sg.candidates(n, k):
        for m in ROWS:
            x = _x(m, k, gen)
            w = weights[count % LAYERS]
            out = torch.full((m, n), float("nan"), dtype=DTYPE, device=DEVICE)
            ws.partial.fill_(float("nan"))
            sg.skinny_linear(x, w, None, config, ws, out=out)
            ref = x.double() @ w.double().T
            worst = max(worst, rel_error(out, ref))
            worst_cublas = max(worst_cublas, rel_error(F.linear(x, w), ref))
            count += 1
    clean = int(ws.count.abs().sum()) == 0
    detail = f"worst rel err {worst:.2e} (cuBLAS {worst_cublas:.2e}); counters re-armed {clean}"
    what = f"{name} {n}x{k}: {count} (config, rows) vs float64"
    report.check("gemv", what, worst < 1e-2 and clean, detail)


def time_shape(report, name, weights, ws, gen) -> dict:
    n, k = weights[0].shape
    result = {}
    for m in ROWS:
        x = _x(m, k, gen)
        cublas = graph_time(lambda x=x: [F.linear(x, w) for w in weights]) / LAYERS
        times = {str(c): _kernel_time(x, weights, c, ws) for c in sg.candidates(n, k)}
        best = min(times, key=times.get)
        tbs = n * k * 2 / times[best] / 1e12
        note = f"{best}, {tbs:.2f} TB/s"
        report.row(f"gemv {name}", f"M={m}", cublas * 1e6, times[best] * 1e6, note)
        result[m] = dict(cublas_us=cublas * 1e6, kernel_us={c: t * 1e6 for c, t in times.items()})
    return result


def _kernel_time(x, weights, config, ws) -> float:
    """Seconds per layer: the kernel over every layer's weight in turn, as one CUDA graph."""
    return graph_time(lambda: [sg.skinny_linear(x, w, None, config, ws) for w in weights]) / LAYERS


def sweep(name, weights, gen) -> dict:
    """Every SWEEP variant x split that fits, at 1 and 16 rows: the fastest few, per layer us."""
    n, k = weights[0].shape
    ws = sg.Workspace(DEVICE, max_n=n, max_split=16)
    found = {}
    for m in (ROWS[0], ROWS[-1]):
        x = _x(m, k, gen)
        for bn, bk, warps, stages in SWEEP:
            for split in (1, 2, 4, 8, 16):
                c = sg.SkinnyConfig(bn, bk, split, warps, stages)
                programs = n // bn * split
                if not c.fits(n, k) or not SWEEP_PROGRAMS[0] <= programs <= SWEEP_PROGRAMS[1]:
                    continue
                try:
                    found[f"M={m} {c}"] = _kernel_time(x, weights, c, ws) * 1e6
                except Exception as e:  # a config that does not compile (shared memory): noted
                    found[f"M={m} {c}"] = f"failed: {type(e).__name__}"
    ranked = sorted((v, key) for key, v in found.items() if isinstance(v, float))
    for m in (ROWS[0], ROWS[-1]):
        top = [f"{key.split(' ', 1)[1]} {v:.2f}" for v, key in ranked if key.startswith(f"M={m} ")]
        print(f"  sweep {name} M={m}: fastest " + "; ".join(top[:4]), flush=True)
    return found


def plan(report, shapes_weights) -> dict:
    layers = []
    for weights in shapes_weights.values():
        for w in weights:
            layer = ColumnParallelLinear(w.shape[1], w.shape[0], bias=False).to(DEVICE, DTYPE)
            layer.weight.data = w
            layers.append(layer)
    t = time.perf_counter()
    kwargs = dict(timer=graph_time, dtypes=(DTYPE,)) if DRY else {}
    rows = sp.plan_linears(layers, [r for r in ROWS if r > 1] or [2], **kwargs)
    seconds = time.perf_counter() - t
    for row in rows:
        print(f"  plan: {row}", flush=True)
    won = [r.kernel_us is not None and r.kernel_us < (1 - sp.MARGIN) * r.cublas_us for r in rows]
    ok = all((r.config is not None) == w for r, w in zip(rows, won))
    detail = f"{sum(r.config is not None for r in rows)}/{len(rows)} chosen, {seconds:.1f} s"
    report.check("gemv", "planner: kernel exactly where it won by the margin", ok, detail)
    return dict(seconds=seconds, rows=[vars(r) for r in rows])


def run(report: Report, do_sweep: bool = True) -> dict:
    print(f"== skinny GEMM: {LAYERS} layers per shape, rows {ROWS}, {DTYPE}", flush=True)
    if DRY:
        sg.PROGRAMS = (1, 1024)  # tiny shapes: any program count will do
    gen = torch.Generator(device=DEVICE).manual_seed(31)
    out = {}
    all_weights = {}
    for name, (n, k) in SHAPES.items():
        weights = _weights(n, k, gen)
        all_weights[name] = weights
        ws = sg.Workspace(DEVICE, max_n=n)
        check_configs(report, name, weights, ws, gen)
        out[name] = dict(timing=time_shape(report, name, weights, ws, gen))
        if do_sweep:
            out[name]["sweep"] = sweep(name, weights, gen)
    out["plan"] = plan(report, all_weights)
    return out
