"""Qwen3 (dense): per-head RMSNorm on q and k before rotary; biases only if config.json asks."""

from __future__ import annotations

from nanovllm.models.decoder import DecoderForCausalLM, DecoderTraits, qk_norm_rope


class Qwen3ForCausalLM(DecoderForCausalLM):
    traits = DecoderTraits(qk_norm=True, mlp_bias=False)


__all__ = ["Qwen3ForCausalLM", "qk_norm_rope"]
