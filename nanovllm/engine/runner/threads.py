"""How many threads a CPU step runs on, and the scope that applies it (``step_threads``).

torch runs each operator on one thread per core. A decode step of a small model is hundreds of
small operators, each a parallel region whose threads meet at a barrier; when another process
holds a core (a test run, a training run, the notebook's browser, a second engine), every barrier
waits for a descheduled thread, a scheduler time slice of milliseconds. Measured on a 2-core
machine with one busy process beside the engine (benchmarks/cpu_peer.py, issue 29's workload):
the teaching model ran at 12,558 tok/s on one thread and 1,622 on two; a 26M-parameter model
(32 requests) at 421 and 73 tok/s. So a step leaves one core free, as vLLM's CPU worker does (it
keeps one for its scheduler process): ``Config.cpu_threads``, by default all the cores torch would
use but one, and at least one. On an otherwise idle machine more threads pay (the 26M model: 905
tok/s on two threads, 651 on one): pass ``cpu_threads`` then. The setting holds only inside a
step; the process's own is restored after, so a training loop beside the engine keeps its threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def default_cpu_threads() -> int:
    return max(1, torch.get_num_threads() - 1)


@contextmanager
def step_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` (None: unchanged) for the ``with`` block."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
