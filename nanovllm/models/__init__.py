"""Model registry keyed by the Hugging Face ``architectures`` name, with lazy imports."""

from __future__ import annotations

import importlib

from nanovllm.errors import UnsupportedModelError

_MODELS = {
    "Qwen3ForCausalLM": ("nanovllm.models.qwen3", "Qwen3ForCausalLM"),
}


def supported_architectures() -> list[str]:
    return sorted(_MODELS)


def check_supported(architecture: str) -> None:
    if architecture not in _MODELS:
        raise UnsupportedModelError(
            f"architecture {architecture!r} is not supported; supported: {supported_architectures()}"
        )


def get_model_class(architecture: str):
    check_supported(architecture)
    module, cls = _MODELS[architecture]
    return getattr(importlib.import_module(module), cls)
