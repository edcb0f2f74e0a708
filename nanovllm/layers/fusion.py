"""torch.compile where it pays: small elementwise chains (norms, rotary, SiLU-and-multiply) that
would otherwise launch several kernels each. Used on CUDA only; on CPU the eager code runs."""

from __future__ import annotations

from collections.abc import Callable

import torch


def maybe_compile(fn: Callable, enabled: bool) -> Callable:
    if not enabled:
        return fn
    return torch.compile(fn, dynamic=True, fullgraph=True)
