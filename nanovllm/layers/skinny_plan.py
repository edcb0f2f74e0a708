"""Choose, by measurement, which decode GEMMs run layers/skinny_gemm.py's kernel instead of cuBLAS.

``plan_linears(layers, row_counts)`` groups the layers by weight shape (and dtype, and bias or
not). For each group it times every candidate config of the kernel at the largest row count, then,
at each row count, the best candidate against cuBLAS (``F.linear``). A layer gets a ``SkinnyPlan``
holding the row counts where the kernel won by at least ``MARGIN``; elsewhere it keeps cuBLAS, so a
plan never makes a shape slower than the measurement said. Run it on CUDA before CUDA-graph
capture: a captured graph keeps the kernels it was captured with.

Each timing is the median replay of a CUDA graph that runs the group's layers one after another,
as a decode step does: no launch overhead, and the weights (together larger than the L2 cache for
a real model) come from memory, not from the cache. Returns one ``PlanRow`` per (shape, rows).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nanovllm.layers import skinny_gemm as sg

MARGIN = 0.03  # the kernel must beat cuBLAS by this fraction: timing noise never flips a choice
REPS = 10  # timed replays per measurement (after one untimed)
DTYPES = (torch.bfloat16, torch.float16)  # float32 stays with cuBLAS (TF32 would change results)


@dataclass
class PlanRow:
    """One (weight shape, row count): what was chosen and the times it was chosen on."""

    layer: str  # class name of the group's layers
    n: int
    k: int
    layers: int
    rows: int
    config: str | None  # the kernel's config, None for cuBLAS
    kernel_us: float | None  # per layer; None when no config fits the shape
    cublas_us: float

    def __str__(self) -> str:
        if self.kernel_us is None:
            return f"{self.layer} {self.n}x{self.k} rows {self.rows}: cuBLAS (no config fits)"
        choice = self.config or "cuBLAS"
        return (
            f"{self.layer} {self.n}x{self.k} (x{self.layers}) rows {self.rows}: {choice}; "
            f"kernel {self.kernel_us:.2f} us vs cuBLAS {self.cublas_us:.2f} us per layer"
        )


def plan_linears(
    layers: Sequence,
    row_counts: Sequence[int],
    timer: Callable[[Callable[[], object]], float] | None = None,
    dtypes: tuple[torch.dtype, ...] = DTYPES,
) -> list[PlanRow]:
    """Give each of ``layers`` (``LinearBase``) a ``skinny`` plan, or None; see the docstring.

    ``timer(fn)`` returns seconds per run of ``fn`` (default: ``time_graph``, CUDA weights only;
    tests pass their own, with ``dtypes``, to check the choosing logic on CPU)."""
    rows = sorted({r for r in row_counts if 1 <= r <= sg.MAX_ROWS})
    groups: dict[tuple, list] = defaultdict(list)
    for layer in layers:
        w = layer.weight
        if rows and (w.is_cuda or timer) and w.dtype in dtypes and w.dim() == 2:
            if w.is_contiguous():
                groups[(tuple(w.shape), w.dtype, layer.bias is not None)].append(layer)
    if not groups:
        return []
    device = next(iter(groups.values()))[0].weight.device
    workspace = sg.Workspace(device, max_n=max(shape[0] for shape, _, _ in groups))
    report = []
    with torch.inference_mode():
        for members in groups.values():
            report += _plan_group(members, rows, workspace, timer or time_graph)
    return report


def _plan_group(members: list, rows: list[int], workspace: sg.Workspace, timer) -> list[PlanRow]:
    n, k = members[0].weight.shape
    params = [(layer.weight, layer.bias) for layer in members]
    x = torch.randn(rows[-1], k, dtype=members[0].weight.dtype, device=members[0].weight.device)

    def kernel(config: sg.SkinnyConfig, m: int) -> Callable[[], None]:
        return lambda: [sg.skinny_linear(x[:m], w, b, config, workspace) for w, b in params]

    def cublas(m: int) -> Callable[[], None]:
        return lambda: [F.linear(x[:m], w, b) for w, b in params]

    cands = sg.candidates(n, k)
    screened = {c: timer(kernel(c, rows[-1])) for c in cands}
    best = min(screened, key=screened.get) if cands else None
    report, configs = [], {}
    for m in rows:
        t_cublas = timer(cublas(m))
        t_kernel = None
        if best is not None:
            t_kernel = screened[best] if m == rows[-1] else timer(kernel(best, m))
            if t_kernel < (1 - MARGIN) * t_cublas:
                configs[m] = best
        per = 1e6 / len(members)
        report.append(
            PlanRow(
                type(members[0]).__name__,
                n,
                k,
                len(members),
                m,
                str(configs[m]) if m in configs else None,
                None if t_kernel is None else t_kernel * per,
                t_cublas * per,
            )
        )
    plan = sg.SkinnyPlan(configs, workspace) if configs else None
    for layer in members:
        layer.skinny = plan
    return report


def time_graph(fn: Callable[[], object], reps: int = REPS) -> float:
    """Seconds per run of ``fn``'s launches: the median replay of a CUDA graph of one run."""
    fn()  # compiles and loads the kernels (the first time), outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    events = [torch.cuda.Event(enable_timing=True) for _ in range(2 * reps)]
    for start, end in zip(events[::2], events[1::2]):
        start.record()
        graph.replay()
        end.record()
    torch.cuda.synchronize()
    times = [s.elapsed_time(e) / 1e3 for s, e in zip(events[::2], events[1::2])]
    del graph
    return statistics.median(times)
