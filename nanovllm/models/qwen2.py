"""Qwen2 / Qwen2.5: biases on q, k and v (always, whatever config.json says), none on o_proj or
the MLP, no q/k norm. Sliding-window configs are refused by ``Config`` unless the window covers
``max_model_len`` (released Qwen2.5 checkpoints set ``use_sliding_window: false``)."""

from __future__ import annotations

from nanovllm.models.decoder import DecoderForCausalLM, DecoderTraits


class Qwen2ForCausalLM(DecoderForCausalLM):
    traits = DecoderTraits(qkv_bias=True, o_bias=False, mlp_bias=False)
