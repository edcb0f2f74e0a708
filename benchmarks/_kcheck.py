"""Shared pieces of benchmarks/gpu_kernels_check.py: the record of checks and timings, and the
timers (CUDA-graph replays on the GPU; one wall-clock call in the CPU dry run, which only
exercises the code)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

DRY = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = torch.device("cpu" if DRY else "cuda")


@dataclass
class Report:
    checks: list[dict] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)  # the closing table
    extra: dict = field(default_factory=dict)  # everything else, for the JSON log

    def check(self, section: str, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(dict(section=section, name=name, ok=bool(ok), detail=detail))
        print(f"  [{'PASS' if ok else 'FAIL'}] {section}: {name} {detail}", flush=True)
        return bool(ok)

    def row(self, what: str, case: str, old_us: float, new_us: float, note: str = "") -> None:
        self.rows.append(dict(what=what, case=case, old_us=old_us, new_us=new_us, note=note))

    def failed(self) -> list[dict]:
        return [c for c in self.checks if not c["ok"]]


def graph_time(fn: Callable[[], object], reps: int = 20) -> float:
    """Seconds per run of ``fn``'s launches: the median replay of a CUDA graph (GPU)."""
    if DRY:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t
    from nanovllm.layers.skinny_plan import time_graph

    return time_graph(fn, reps)


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref||, in float64; inf when ``out`` holds NaN (an unwritten element)."""
    if out.isnan().any():
        return float("inf")
    ref = ref.double()
    return float((out.double() - ref).norm() / ref.norm())


def median(xs) -> float:
    return statistics.median(xs)
