"""Random-weight checkpoints of real Qwen3 shapes, built from a config alone (no download).

For GPU benchmarks and GPU correctness tests: weights are drawn directly on ``device`` and written
as safetensors under Hugging Face names, so a 0.6B model takes seconds. The tokenizer is the tiny
model's (its 448 ids fit any vocabulary); throughput does not depend on weight values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

QWEN3_0_6B: dict[str, Any] = dict(
    hidden_size=1024,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    intermediate_size=3072,
    vocab_size=151936,
    tie_word_embeddings=True,
    rope_theta=1_000_000.0,
    max_position_embeddings=40960,
    rms_norm_eps=1e-6,
)
QWEN3_8B: dict[str, Any] = dict(
    hidden_size=4096,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    intermediate_size=12288,
    vocab_size=151936,
    tie_word_embeddings=False,
    rope_theta=1_000_000.0,
    max_position_embeddings=40960,
    rms_norm_eps=1e-6,
)


def qwen3_tensor_shapes(c: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    h, d, n = c["hidden_size"], c["head_dim"], c["intermediate_size"]
    q, kv = c["num_attention_heads"] * d, c["num_key_value_heads"] * d
    shapes = {"model.embed_tokens.weight": (c["vocab_size"], h), "model.norm.weight": (h,)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update(
            {
                p + "self_attn.q_proj.weight": (q, h),
                p + "self_attn.k_proj.weight": (kv, h),
                p + "self_attn.v_proj.weight": (kv, h),
                p + "self_attn.o_proj.weight": (h, q),
                p + "self_attn.q_norm.weight": (d,),
                p + "self_attn.k_norm.weight": (d,),
                p + "mlp.gate_proj.weight": (n, h),
                p + "mlp.up_proj.weight": (n, h),
                p + "mlp.down_proj.weight": (h, n),
                p + "input_layernorm.weight": (h,),
                p + "post_attention_layernorm.weight": (h,),
            }
        )
    if not c["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (c["vocab_size"], h)
    return shapes


def make_random_model(
    path: str | Path,
    config: dict[str, Any] = QWEN3_0_6B,
    *,
    dtype: str = "bfloat16",
    std: float = 0.02,
    seed: int = 0,
    device: str = "cpu",
) -> Path:
    """Write config.json, model.safetensors and tokenizer files of a random Qwen3 into ``path``."""
    import torch
    from safetensors.torch import save_file

    from nanovllm.testing.tiny import _build_tokenizer, _portable_tokenizer_config

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator(device=device).manual_seed(seed)
    tensors = {}
    for name, shape in qwen3_tensor_shapes(config).items():
        if name.endswith("norm.weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen, device=device)
        else:
            t = std * torch.randn(shape, generator=gen, device=device)
        tensors[name] = t.to(getattr(torch, dtype)).cpu()
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    full = {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_act": "silu",
        "attention_bias": False,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "torch_dtype": dtype,
        "rope_scaling": None,
        **config,
    }
    (path / "config.json").write_text(json.dumps(full, indent=2))
    tokenizer = _build_tokenizer(model_max_length=config["max_position_embeddings"])
    tokenizer.save_pretrained(path)
    _portable_tokenizer_config(path)
    return path
