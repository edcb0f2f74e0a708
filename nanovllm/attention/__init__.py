"""Attention backends behind one small interface, chosen by name with lazy imports.

``torch_ref`` (the oracle, on any device) and ``cpu_sdpa`` (the same attention arranged for a CPU,
the CPU default; it plans on the host, so a CPU device only) are pure torch and always exist.
``triton`` is the GPU default. Importing nanovllm never imports
triton. Optional backends over flash-attn or FlashInfer would register here the same way
(module, class, package); none is implemented yet, so none is offered.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

from nanovllm.attention.base import AttentionBackend
from nanovllm.attention.metadata import AttentionMetadata
from nanovllm.errors import ConfigError

_BACKENDS = {  # name -> (module, class, the package it needs: None for pure torch)
    "torch_ref": ("nanovllm.attention.torch_ref", "TorchRefBackend", None),
    "cpu_sdpa": ("nanovllm.attention.cpu_sdpa", "CpuSdpaBackend", None),
    "triton": ("nanovllm.attention.triton_backend", "TritonBackend", "triton"),
}


_CPU_ONLY = {"cpu_sdpa"}  # its per-step plan (index tensors, the C kernel) lives on the host


def backend_names() -> list[str]:
    """Every registered backend, plus "auto" (the one table Config validates against)."""
    return ["auto", *_BACKENDS]


def available_backends(device: str) -> list[str]:
    names = [n for n, (_, _, pkg) in _BACKENDS.items() if pkg is None]
    if device.startswith("cuda"):
        names = [n for n in names if n not in _CPU_ONLY]
        names += [
            n for n, (_, _, pkg) in _BACKENDS.items() if pkg and importlib.util.find_spec(pkg)
        ]
    return names


def resolve_backend_name(name: str, device: str) -> str:
    """``auto``: triton on CUDA when importable (else torch_ref); cpu_sdpa on CPU."""
    if name == "auto":
        if not device.startswith("cuda"):
            return "cpu_sdpa"
        return "triton" if "triton" in available_backends(device) else "torch_ref"
    if name not in _BACKENDS:
        raise ConfigError(f"attention_backend={name!r} is unknown; choose from {sorted(_BACKENDS)}")
    if name in _CPU_ONLY and device.startswith("cuda"):
        raise ConfigError(
            f"attention_backend={name!r} runs on a CPU device only; on {device} use 'triton' "
            "(the GPU default) or 'torch_ref' (the reference), or pass device='cpu'"
        )
    interpreted = name == "triton" and os.environ.get("TRITON_INTERPRET") == "1"
    if _BACKENDS[name][2] and not device.startswith("cuda") and not interpreted:
        raise ConfigError(
            f"attention_backend={name!r} needs a CUDA device; on {device} use 'cpu_sdpa' "
            "(or 'torch_ref', the reference)"
        )
    if not interpreted and name not in available_backends(device):
        raise ConfigError(
            f"attention_backend={name!r}: package {_BACKENDS[name][2]!r} is not installed"
        )
    return name


def get_backend(name: str) -> AttentionBackend:
    module, cls, _ = _BACKENDS[name]
    return getattr(importlib.import_module(module), cls)()


__all__ = [
    "AttentionBackend",
    "AttentionMetadata",
    "available_backends",
    "backend_names",
    "get_backend",
    "resolve_backend_name",
]
