"""What config.json tells the engine about a family: rope scaling, sliding windows, MoE, and the
clear errors for what is not implemented (ModelSpec, Config, layers.rotary)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from nanovllm import LLM, ConfigError, SamplingParams, UnsupportedModelError
from nanovllm.config import Config, ModelSpec
from nanovllm.layers.rotary import RotaryEmbedding, inv_frequencies
from nanovllm.testing import tiny_model_path
from nanovllm.testing.random_model import ARCHS

BASE = dict(
    architectures=["LlamaForCausalLM"],
    vocab_size=512,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
)
LLAMA31_SCALING = dict(
    rope_type="llama3",
    factor=8.0,
    low_freq_factor=1.0,
    high_freq_factor=4.0,
    original_max_position_embeddings=8192,
)


def spec(**raw) -> ModelSpec:
    return ModelSpec.from_dict({**BASE, **raw})


def test_llama3_inverse_frequencies_equal_transformers_bit_for_bit():
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    hf_config = LlamaConfig(
        hidden_size=4096, num_attention_heads=32, rope_theta=500000.0, rope_scaling=LLAMA31_SCALING
    )
    want, _ = ROPE_INIT_FUNCTIONS["llama3"](hf_config, "cpu")
    s = spec(rope_theta=500000.0, rope_scaling=LLAMA31_SCALING)
    got = inv_frequencies(128, s.rope_theta, s.rope_scaling)
    assert torch.equal(got, want)
    plain = inv_frequencies(128, s.rope_theta)
    assert not torch.equal(got, plain) and torch.equal(got[:10], plain[:10])  # high freqs kept


def test_tiny_llamas_rope_table_is_scaled():
    s = Config.from_model(tiny_model_path(family="llama")).spec
    scaled = RotaryEmbedding(s.head_dim, 64, s.rope_theta, scaling=s.rope_scaling)
    plain = RotaryEmbedding(s.head_dim, 64, s.rope_theta)
    assert not torch.equal(scaled.cos, plain.cos)  # the HF equivalence test covers the scaling


@pytest.mark.parametrize(
    "raw",
    [
        dict(rope_scaling=dict(rope_type="yarn", factor=4.0)),
        dict(rope_parameters=dict(rope_type="linear", factor=2.0, rope_theta=1e4)),
        dict(rope_scaling=dict(type="dynamic", factor=2.0)),
        dict(hidden_act="gelu"),
    ],
)
def test_unimplemented_features_are_unsupported_model_errors(raw):
    with pytest.raises(UnsupportedModelError) as info:
        spec(**raw)
    assert any(str(v) in str(info.value) for v in ("yarn", "linear", "dynamic", "gelu"))


def test_rope_parameters_of_transformers_5_are_read():
    s = spec(rope_parameters=dict(LLAMA31_SCALING, rope_theta=500000.0))
    assert s.rope_theta == 500000.0 and s.rope_scaling.factor == 8.0
    assert spec(rope_parameters=dict(rope_type="default", rope_theta=1e4)).rope_scaling is None


@pytest.mark.parametrize(
    "raw, window",
    [
        (dict(sliding_window=4096), 4096),  # Mistral v0.1: every layer
        (dict(sliding_window=None), None),  # Mistral v0.3
        (dict(sliding_window=32768, use_sliding_window=False), None),  # released Qwen2.5
        (dict(sliding_window=1024, use_sliding_window=True, max_window_layers=2), None),
        (dict(sliding_window=1024, use_sliding_window=True, max_window_layers=1), 1024),
        (dict(sliding_window=512, layer_types=["full_attention"] * 2), None),
    ],
)
def test_sliding_window_is_read_as_hf_applies_it(raw, window):
    assert spec(**raw).sliding_window == window


def _mistral_with(tmp_path, **raw) -> str:
    src = tiny_model_path(family="mistral")
    dst = tmp_path / "mistral"
    shutil.copytree(src, dst)
    data = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**data, **raw}))
    return str(dst)


def test_mistral_sliding_window_shorter_than_max_model_len_is_refused(tmp_path):
    path = _mistral_with(tmp_path, sliding_window=64)
    with pytest.raises(UnsupportedModelError) as info:
        LLM(path, max_model_len=128)
    assert "sliding_window=64" in str(info.value) and "max_model_len<=64" in str(info.value)
    with LLM(path, max_model_len=64, kvcache_block_size=16) as llm:  # the window covers it all
        [out] = llm.generate([[5, 6, 7]], SamplingParams(max_tokens=3), use_tqdm=False)
        assert len(out["token_ids"]) == 3


@pytest.mark.parametrize(
    "family, tp, what",
    [
        ("qwen2", 4, "num_attention_heads=6"),
        ("mistral", 3, "num_attention_heads=4"),
        ("qwen3_moe", 3, "num_attention_heads=16"),
    ],
)
def test_tensor_parallel_sizes_that_do_not_divide_are_config_errors(family, tp, what):
    with pytest.raises(ConfigError) as info:
        LLM(str(tiny_model_path(family=family)), tensor_parallel_size=tp)
    assert f"tensor_parallel_size={tp}" in str(info.value) and what in str(info.value)


def test_moe_intermediate_size_must_split_over_ranks():
    raw = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=30)
    s = spec(architectures=["Qwen3MoeForCausalLM"], **raw)
    with pytest.raises(ConfigError, match="moe_intermediate_size=30"):
        Config(model="x", spec=s, tensor_parallel_size=4)


def test_real_shapes_parse_with_their_features():
    llama = ModelSpec.from_dict(ARCHS["llama-3.2-1b"])
    assert llama.rope_scaling.factor == 32.0 and llama.tie_word_embeddings
    qwen25 = ModelSpec.from_dict(ARCHS["qwen2.5-0.5b"])
    assert qwen25.sliding_window is None and qwen25.head_dim == 64
    moe = ModelSpec.from_dict(ARCHS["qwen3-30b-a3b"]).moe
    assert (moe.num_experts, moe.top_k, moe.moe_intermediate_size) == (128, 8, 768)


def test_load_format_random_needs_no_weight_file(tmp_path):
    src = tiny_model_path(family="llama")
    for f in src.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, tmp_path / f.name)
    with LLM(str(tmp_path), load_format="random", kvcache_block_size=16) as llm:
        [out] = llm.generate([[1, 2, 3]], SamplingParams(max_tokens=2), use_tqdm=False)
        assert len(out["token_ids"]) == 2
    with LLM(str(tmp_path), load_format="dummy", kvcache_block_size=16) as llm:  # vLLM's name
        assert llm.config.load_format == "random"
    with pytest.raises(ConfigError, match="load_format"):
        LLM(str(tmp_path), load_format="bogus")
