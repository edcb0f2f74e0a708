"""Random-weight checkpoints of real model shapes, built from a config alone (no download).

For GPU benchmarks and GPU correctness tests: weights are drawn directly on ``device`` and written
as safetensors under Hugging Face names, so a 1B model takes seconds. The tokenizer is the tiny
model's (its 448 ids fit any vocabulary); throughput does not depend on weight values.
``weights=False`` writes only config.json and the tokenizer: with ``LLM(path,
load_format="random")`` the engine then draws the weights itself (Qwen3-30B-A3B's 61 GB would
not fit the device machine's disk).

Each config dict holds config.json's keys; ``architectures`` picks the family (Qwen3 if absent).
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
    QWEN3_0_6B,
    hidden_size=4096,
    num_hidden_layers=36,
    num_attention_heads=32,
    intermediate_size=12288,
    tie_word_embeddings=False,
)
LLAMA_3_2_1B: dict[str, Any] = dict(
    architectures=["LlamaForCausalLM"],
    model_type="llama",
    hidden_size=2048,
    num_hidden_layers=16,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=64,
    intermediate_size=8192,
    vocab_size=128256,
    tie_word_embeddings=True,
    rope_theta=500_000.0,
    rope_scaling=dict(
        rope_type="llama3",
        factor=32.0,
        low_freq_factor=1.0,
        high_freq_factor=4.0,
        original_max_position_embeddings=8192,
    ),
    max_position_embeddings=131072,
    rms_norm_eps=1e-5,
    attention_bias=False,
    mlp_bias=False,
)
QWEN2_5_0_5B: dict[str, Any] = dict(
    architectures=["Qwen2ForCausalLM"],
    model_type="qwen2",
    hidden_size=896,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    intermediate_size=4864,
    vocab_size=151936,
    tie_word_embeddings=True,
    rope_theta=1_000_000.0,
    max_position_embeddings=32768,
    rms_norm_eps=1e-6,
    use_sliding_window=False,
    sliding_window=32768,
    max_window_layers=21,
)
QWEN3_30B_A3B: dict[str, Any] = dict(
    architectures=["Qwen3MoeForCausalLM"],
    model_type="qwen3_moe",
    hidden_size=2048,
    num_hidden_layers=48,
    num_attention_heads=32,
    num_key_value_heads=4,
    head_dim=128,
    intermediate_size=6144,
    moe_intermediate_size=768,
    num_experts=128,
    num_experts_per_tok=8,
    norm_topk_prob=True,
    decoder_sparse_step=1,
    mlp_only_layers=[],
    vocab_size=151936,
    tie_word_embeddings=False,
    rope_theta=1_000_000.0,
    max_position_embeddings=40960,
    rms_norm_eps=1e-6,
)
# bench.py --arch names
ARCHS: dict[str, dict[str, Any]] = {
    "0.6b": QWEN3_0_6B,
    "8b": QWEN3_8B,
    "llama-3.2-1b": LLAMA_3_2_1B,
    "qwen2.5-0.5b": QWEN2_5_0_5B,
    "qwen3-30b-a3b": QWEN3_30B_A3B,
}


def architecture(c: dict[str, Any]) -> str:
    return (c.get("architectures") or ["Qwen3ForCausalLM"])[0]


def _is_sparse(c: dict[str, Any], i: int) -> bool:
    if not c.get("num_experts"):
        return False
    step = c.get("decoder_sparse_step") or 1
    return i not in (c.get("mlp_only_layers") or ()) and (i + 1) % step == 0


def _mlp_shapes(c: dict[str, Any], p: str, i: int) -> dict[str, tuple[int, ...]]:
    h = c["hidden_size"]
    if not _is_sparse(c, i):
        n, bias = c["intermediate_size"], c.get("mlp_bias", False)
        out = {p + f"mlp.{x}_proj.weight": s for x, s in (("gate", (n, h)), ("up", (n, h)))}
        out[p + "mlp.down_proj.weight"] = (h, n)
        if bias:
            out.update({p + f"mlp.{x}_proj.bias": (h if x == "down" else n,) for x in MLP})
        return out
    n, out = c["moe_intermediate_size"], {p + "mlp.gate.weight": (c["num_experts"], h)}
    for e in range(c["num_experts"]):
        q = p + f"mlp.experts.{e}."
        out.update({q + "gate_proj.weight": (n, h), q + "up_proj.weight": (n, h)})
        out[q + "down_proj.weight"] = (h, n)
    return out


MLP = ("gate", "up", "down")


def tensor_shapes(c: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every checkpoint tensor of config ``c``, under its Hugging Face name."""
    arch = architecture(c)
    h = c["hidden_size"]
    d = c.get("head_dim") or h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * d, c["num_key_value_heads"] * d
    qk_norm = arch.startswith("Qwen3")
    qkv_bias = arch == "Qwen2ForCausalLM" or c.get("attention_bias", False)
    o_bias = arch != "Qwen2ForCausalLM" and c.get("attention_bias", False)
    shapes = {"model.embed_tokens.weight": (c["vocab_size"], h), "model.norm.weight": (h,)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = p + "self_attn."
        shapes.update({a + "q_proj.weight": (q, h), a + "k_proj.weight": (kv, h)})
        shapes.update({a + "v_proj.weight": (kv, h), a + "o_proj.weight": (h, q)})
        if qk_norm:
            shapes.update({a + "q_norm.weight": (d,), a + "k_norm.weight": (d,)})
        if qkv_bias:
            shapes.update({a + "q_proj.bias": (q,), a + "k_proj.bias": (kv,)})
            shapes[a + "v_proj.bias"] = (kv,)
        if o_bias:
            shapes[a + "o_proj.bias"] = (h,)
        shapes.update(_mlp_shapes(c, p, i))
        shapes.update(
            {p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,)}
        )
    if not c["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (c["vocab_size"], h)
    return shapes


qwen3_tensor_shapes = tensor_shapes  # the name bench.py and notebooks used


def _full_config(c: dict[str, Any], dtype: str) -> dict[str, Any]:
    arch = architecture(c)
    model_type = {
        "LlamaForCausalLM": "llama",
        "MistralForCausalLM": "mistral",
        "Qwen2ForCausalLM": "qwen2",
        "Qwen3ForCausalLM": "qwen3",
        "Qwen3MoeForCausalLM": "qwen3_moe",
    }[arch]
    full = {
        "architectures": [arch],
        "model_type": model_type,
        "hidden_act": "silu",
        "attention_bias": False,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "torch_dtype": dtype,
        "rope_scaling": None,
        **c,
    }
    if arch == "MistralForCausalLM":
        full.setdefault("sliding_window", None)
    return full


def make_random_model(
    path: str | Path,
    config: dict[str, Any] = QWEN3_0_6B,
    *,
    dtype: str = "bfloat16",
    std: float = 0.02,
    seed: int = 0,
    device: str = "cpu",
    weights: bool = True,
) -> Path:
    """Write config.json, model.safetensors (unless ``weights=False``) and tokenizer files of a
    random model of ``config``'s family and shape into ``path``."""
    import torch
    from safetensors.torch import save_file

    from nanovllm.teaching.hf_format import CHAT_TEMPLATE, write_tokenizer
    from nanovllm.testing.tiny import _build_tokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if weights:
        gen = torch.Generator(device=device).manual_seed(seed)
        tensors = {}
        for name, shape in tensor_shapes(config).items():
            if name.endswith("norm.weight"):
                t = 1.0 + 0.1 * torch.randn(shape, generator=gen, device=device)
            else:
                t = std * torch.randn(shape, generator=gen, device=device)
            tensors[name] = t.to(getattr(torch, dtype)).cpu()
        save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    full = _full_config(config, dtype)
    (path / "config.json").write_text(json.dumps(full, indent=2))
    tokenizer = _build_tokenizer(model_max_length=config["max_position_embeddings"])
    write_tokenizer(tokenizer, path, CHAT_TEMPLATE)
    return path
