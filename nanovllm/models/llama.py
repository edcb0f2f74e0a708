"""Llama 2 / 3 / 3.1 / 3.2 and Mistral: the plain decoder.

Llama reads ``attention_bias`` (q, k, v and o) and ``mlp_bias`` from config.json and may use
Llama 3's "llama3" rope scaling (``spec.rope_scaling``); the 1B / 3B models tie the LM head to the
embedding (``tie_word_embeddings``). Mistral is Llama without biases; a sliding window shorter
than ``max_model_len`` is refused by ``Config`` (full attention would not equal it).
"""

from __future__ import annotations

from nanovllm.models.decoder import DecoderForCausalLM, DecoderTraits


class LlamaForCausalLM(DecoderForCausalLM):
    traits = DecoderTraits()


class MistralForCausalLM(DecoderForCausalLM):
    traits = DecoderTraits(qkv_bias=False, o_bias=False, mlp_bias=False)
