"""Model registry keyed by the Hugging Face ``architectures`` name, with lazy imports.

Every dense family is ``models.decoder.DecoderForCausalLM`` with its own ``traits``; Qwen3-MoE
replaces the MLP of its sparse layers with routed experts (``models.qwen3_moe``).
"""

from __future__ import annotations

import importlib

from nanovllm.errors import UnsupportedModelError

_MODELS = {
    "LlamaForCausalLM": ("nanovllm.models.llama", "LlamaForCausalLM"),
    "MistralForCausalLM": ("nanovllm.models.llama", "MistralForCausalLM"),
    "Qwen2ForCausalLM": ("nanovllm.models.qwen2", "Qwen2ForCausalLM"),
    "Qwen3ForCausalLM": ("nanovllm.models.qwen3", "Qwen3ForCausalLM"),
    "Qwen3MoeForCausalLM": ("nanovllm.models.qwen3_moe", "Qwen3MoeForCausalLM"),
}


def supported_architectures() -> list[str]:
    return sorted(_MODELS)


def check_supported(architecture: str) -> None:
    if architecture not in _MODELS:
        raise UnsupportedModelError(
            f"architecture {architecture!r} is not supported; supported: "
            f"{supported_architectures()}"
        )


def get_model_class(architecture: str):
    check_supported(architecture)
    module, cls = _MODELS[architecture]
    return getattr(importlib.import_module(module), cls)
