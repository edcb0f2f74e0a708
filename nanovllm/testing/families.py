"""The model families the testing helpers build: Hugging Face class names and tiny shapes.

Each family's tiny shape differs from Qwen3-0.6B's on purpose (GQA ratio, untied head, biases,
rope scaling, dense layers among sparse ones), so equivalence tests exercise what the family adds.
``TINY_VARIANTS`` names the other tiny Qwen3 shapes the tests build:
``tiny_model_path(**TINY_VARIANTS["heads6"])``.
"""

from __future__ import annotations

from typing import Any

# family -> (transformers config class, transformers model class = config.json "architectures")
HF_CLASSES: dict[str, tuple[str, str]] = {
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM"),
}
FAMILIES = tuple(HF_CLASSES)

# Llama 3 style "llama3" scaling; with head_dim 16 and theta 1e4 the wavelengths (6 .. 20000)
# straddle both thresholds (256 / 4 = 64 and 256 / 1 = 256): kept, blended and stretched bands.
LLAMA3_ROPE_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 256,
}

# Overrides of tiny.TINY_CONFIG per family (qwen3: none, the historical tiny model).
TINY_FAMILY_CONFIGS: dict[str, dict[str, Any]] = {
    "qwen3": {},
    "llama": dict(  # GQA 4:1, untied, llama3 rope scaling
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
        rope_theta=10000.0,
        rope_scaling=LLAMA3_ROPE_SCALING,
        tie_word_embeddings=False,
    ),
    "qwen2": dict(  # GQA 3:1, q/k/v bias, untied
        hidden_size=96,
        num_hidden_layers=3,
        num_attention_heads=6,
        num_key_value_heads=2,
        use_sliding_window=False,
        tie_word_embeddings=False,
    ),
    "mistral": dict(  # MHA (1:1), untied, no sliding window (as v0.3)
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        sliding_window=None,
        tie_word_embeddings=False,
    ),
    "qwen3_moe": dict(  # GQA 8:1 as Qwen3-30B-A3B; 8 experts, top-2; layer 1 dense
        num_hidden_layers=3,
        num_attention_heads=16,
        num_key_value_heads=2,
        intermediate_size=96,
        moe_intermediate_size=32,
        num_experts=8,
        num_experts_per_tok=2,
        norm_topk_prob=True,
        decoder_sparse_step=1,
        mlp_only_layers=[1],
        tie_word_embeddings=False,
    ),
}


# Named variants of the tiny Qwen3 (overrides of tiny.TINY_CONFIG). The cache key is the overrides,
# so a variant builds once per machine whoever asks for it.
TINY_VARIANTS: dict[str, dict[str, Any]] = {
    # other head counts: 8 query / 2 KV heads (GQA 4), head_dim 8, 3 layers, untied embeddings
    "gqa4": dict(
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=8,
        hidden_size=64,
        num_hidden_layers=3,
        tie_word_embeddings=False,
        intermediate_size=96,
    ),
    # tensor parallelism: 2 divides the heads (6) and KV heads (2), 4 divides neither;
    # vocab 500 = 2 x 250; untied head
    "heads6": dict(
        num_attention_heads=6,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=96,
        vocab_size=500,
        tie_word_embeddings=False,
    ),
    # a vocabulary two ranks split unevenly: 226 + 225 rows, the last rank's shard is padded
    "odd_vocab": dict(vocab_size=451),
}


def check_family(family: str) -> None:
    if family not in HF_CLASSES:
        raise ValueError(f"family={family!r} is unknown; choose one of {list(FAMILIES)}")
