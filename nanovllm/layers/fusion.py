"""Where the elementwise ops around the matmuls run (norms, rotary, SiLU-and-multiply): each layer
asks ``elementwise_op(fn, mode)`` for its function, and ``Config.elementwise`` gives the mode.

    "torch"    ``fn`` as written, eager: the oracle, and what runs on CPU
    "compile"  ``torch.compile(fn)``: Inductor fuses each chain into one or two kernels, at the
               cost of Dynamo and Inductor at start (a Qwen3-0.6B engine came up in 32.5 s cold
               on the H200 this way, 15.1 s with "triton")
    "triton"   the function of the same name in ``layers/elementwise_kernels.py``: one hand-written
               kernel per op, nothing to compile at start but the kernels (the CUDA default)

One fusion crosses into attention: ``kv_store_op`` says whether attention's prologue also writes
this step's K/V into the paged cache, which saves the attention backend's store launch per layer.
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


def kv_store_op(mode: str, attention_backend: str, enabled: bool) -> Callable | None:
    """The attention prologue that also stores K/V (``elementwise_kernels.qk_norm_rope_store_kv``)
    where it applies, else None (the prologue returns k and v; the backend stores them).

    It applies when ``enabled`` (``Config.fused_kv_store``), the elementwise ops are our Triton
    kernels (CUDA, or the interpreter in tests) and the attention backend is ``triton``, whose
    cache layout and skip rule (a negative slot) the kernel shares. The torch and compile modes
    and the CPU backends keep the separate store."""
    if not (enabled and mode == "triton" and attention_backend == "triton"):
        return None
    from nanovllm.layers import elementwise_kernels  # imports triton: CUDA only

    return elementwise_kernels.qk_norm_rope_store_kv
