"""Where the elementwise ops around the matmuls run (norms, rotary, SiLU-and-multiply): each layer
asks ``elementwise_op(fn, mode)`` for its function, and ``Config.elementwise`` gives the mode.

    "torch"    ``fn`` as written, eager: the oracle, and what runs on CPU
    "compile"  ``torch.compile(fn)``: Inductor fuses each chain into one or two kernels, at the
               cost of Dynamo and Inductor at start (a Qwen3-0.6B engine came up in 32.5 s cold
               on the H200 this way, 15.1 s with "triton")
    "triton"   the function of the same name in ``layers/elementwise_kernels.py``: one hand-written
               kernel per op, nothing to compile at start but the kernels (the CUDA default)
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def elementwise_op(fn: Callable, mode: str) -> Callable:
    if mode == "torch":
        return fn
    if mode == "compile":
        return torch.compile(fn, dynamic=True, fullgraph=True)
    if mode == "triton":
        from nanovllm.layers import elementwise_kernels  # imports triton: CUDA only

        return getattr(elementwise_kernels, fn.__name__)
    raise ValueError(f"elementwise mode {mode!r}")
