"""nanovllm.testing.tiny: the offline random Qwen3 checkpoint loads in Hugging Face transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors import safe_open  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from nanovllm.testing import TINY_CONFIG, make_tiny_model, tiny_model_path  # noqa: E402
from nanovllm.testing.families import TINY_VARIANTS  # noqa: E402
from nanovllm.testing.tiny import TOKENIZER_VOCAB_SIZE  # noqa: E402

FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def model(tiny):
    m, info = AutoModelForCausalLM.from_pretrained(tiny, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return m.eval()


@pytest.fixture(scope="module")
def tokenizer(tiny):
    return AutoTokenizer.from_pretrained(tiny)


def _keys(path: Path) -> set[str]:
    with safe_open(path / "model.safetensors", "pt") as f:
        return set(f.keys())


def _tensor(path: Path, key: str):
    with safe_open(path / "model.safetensors", "pt") as f:
        return f.get_tensor(key)


def test_files_and_raw_config(tiny):
    for name in FILES + ("tokenizer_config.json",):
        assert (tiny / name).is_file(), name
    raw = json.loads((tiny / "config.json").read_text())
    assert raw["architectures"] == ["Qwen3ForCausalLM"]
    assert raw["model_type"] == "qwen3"
    assert raw["torch_dtype"] == "float32"
    assert raw["rope_theta"] == 1e6  # top-level, as in released Qwen3 checkpoints
    for key in (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "intermediate_size",
        "rms_norm_eps",
        "max_position_embeddings",
        "tie_word_embeddings",
        "hidden_act",
        "attention_bias",
    ):
        assert raw[key] == TINY_CONFIG[key], key


def test_hf_config_matches_defaults(tiny, tokenizer):
    cfg = AutoConfig.from_pretrained(tiny)
    assert cfg.model_type == "qwen3"
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.head_dim) == (64, 2, 16)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads) == (4, 2)
    assert cfg.vocab_size == 512 >= len(tokenizer)
    assert (
        cfg.eos_token_id
        == tokenizer.eos_token_id
        == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    )
    assert cfg.bos_token_id == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    rope = getattr(cfg, "rope_parameters", None) or {"rope_theta": cfg.rope_theta}
    assert rope["rope_theta"] == 1e6
    gen = json.loads((tiny / "generation_config.json").read_text())
    assert gen["eos_token_id"] == gen["pad_token_id"] == cfg.eos_token_id


def test_tied_embeddings_saved_once(tiny, model):
    keys = _keys(tiny)
    assert "model.embed_tokens.weight" in keys and "lm_head.weight" not in keys
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_untied_overrides(tmp_path):
    path = make_tiny_model(
        tmp_path,
        tie_word_embeddings=False,
        num_attention_heads=8,
        num_key_value_heads=4,
        num_hidden_layers=3,
        my_extra_key=7,
    )
    cfg = AutoConfig.from_pretrained(path)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.num_hidden_layers) == (8, 4, 3)
    assert cfg.tie_word_embeddings is False
    assert json.loads((path / "config.json").read_text())["my_extra_key"] == 7
    assert "lm_head.weight" in _keys(path)
    assert not torch.equal(
        _tensor(path, "lm_head.weight"), _tensor(path, "model.embed_tokens.weight")
    )
    m, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert len(m.model.layers) == 3


def test_dtype_override_casts_weights(tmp_path):
    path = make_tiny_model(tmp_path, torch_dtype="bfloat16")
    assert json.loads((path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert _tensor(path, "model.embed_tokens.weight").dtype == torch.bfloat16


def test_same_seed_byte_identical_other_seed_differs(tiny, tmp_path):
    again = make_tiny_model(tmp_path / "again")
    for name in FILES + ("tokenizer_config.json",):
        assert (tiny / name).read_bytes() == (again / name).read_bytes(), name
    other = make_tiny_model(tmp_path / "other", seed=1)
    assert (other / "model.safetensors").read_bytes() != (tiny / "model.safetensors").read_bytes()
    assert (other / "tokenizer.json").read_bytes() == (tiny / "tokenizer.json").read_bytes()


def test_deterministic_across_processes(tiny, tmp_path):
    """Hash seeds differ per process; the BPE trainer and the weights must not care."""
    code = "import sys; from nanovllm.testing import make_tiny_model; make_tiny_model(sys.argv[1])"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, env=env)
    for name in FILES:
        assert (tiny / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_weights_are_spread(tiny):
    emb = _tensor(tiny, "model.embed_tokens.weight")[:TOKENIZER_VOCAB_SIZE]
    assert 0.15 <= emb.std().item() <= 0.3
    q_norm = _tensor(tiny, "model.layers.0.self_attn.q_norm.weight")
    assert 0.5 < q_norm.mean().item() < 1.5 and q_norm.std().item() > 0.03  # not all ones


def test_vocab_size_too_small_raises(tmp_path):
    with pytest.raises(ValueError, match=rf"vocab_size=300.*{TOKENIZER_VOCAB_SIZE}"):
        make_tiny_model(tmp_path, vocab_size=300)


def test_bad_head_ratio_raises(tmp_path):
    with pytest.raises(ValueError, match="num_key_value_heads=3"):
        make_tiny_model(tmp_path, num_attention_heads=4, num_key_value_heads=3)


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world!",
        "  leading spaces, trailing spaces  ",
        "The KV cache\nholds 16 blocks;\ttabs\r\nand CRLF.",
        "x = {'a': [1, 2.5e-3]} ~`|\\^<>@#$%&*()_+-=",
        "".join(chr(c) for c in range(128)),
        "",
    ],
)
def test_ascii_round_trip(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert all(0 <= i < TOKENIZER_VOCAB_SIZE for i in ids)
    assert tokenizer.decode(ids) == text


def test_tokenizer_specials_and_chat_template(tokenizer):
    assert len(tokenizer) == TOKENIZER_VOCAB_SIZE
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.encode("hi", add_special_tokens=True) == tokenizer.encode(
        "hi", add_special_tokens=False
    )  # no BOS, as Qwen
    ids = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    assert ids == [0, 1, 2]
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is a block table?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert prompt == "<|im_start|>user\nWhat is a block table?<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.encode(prompt)[0] == 1  # the special token stays one id
    assert tokenizer.decode(tokenizer.encode(prompt)) == prompt


def test_logits_well_spread(model):
    ids = torch.randint(
        0, TOKENIZER_VOCAB_SIZE, (4, 64), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        logits = model(ids).logits
    top2 = logits.topk(2, dim=-1).values
    gap = top2[..., 0] - top2[..., 1]
    assert (gap > 1e-3).float().mean() > 0.95
    assert logits.std() > 0.5
    assert (logits.argmax(-1) < TOKENIZER_VOCAB_SIZE).all()  # padded rows never win greedy


def test_hf_greedy_generate_not_constant(model, tokenizer):
    prompt = tokenizer("The scheduler preempts a sequence when", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=24, do_sample=False)
    new = out[0, prompt["input_ids"].shape[1] :].tolist()
    assert len(new) >= 2 and len(set(new)) > 1, new
    again = model.generate(**prompt, max_new_tokens=24, do_sample=False)
    assert torch.equal(out, again)
    assert isinstance(tokenizer.decode(new), str)


def test_tiny_model_path_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOVLLM_CACHE", str(tmp_path))
    t0 = time.perf_counter()
    first = tiny_model_path(num_hidden_layers=1)
    assert first.parent == tmp_path and first.name.startswith("tiny-")
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert tiny_model_path(num_hidden_layers=1) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert time.perf_counter() - t0 < 30
    assert tiny_model_path(num_hidden_layers=1, seed=1) != first
    assert tiny_model_path() != first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]  # no leftovers
    assert AutoConfig.from_pretrained(first).num_hidden_layers == 1


def test_tiny_model_path_concurrent_builders(tmp_path):
    code = "from nanovllm.testing import tiny_model_path; print(tiny_model_path(seed=7))"
    env = {**os.environ, "NANOVLLM_CACHE": str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(outs) == 1
    path = Path(outs.pop())
    assert AutoTokenizer.from_pretrained(path).decode([]) == ""
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


# ---- other families ------------------------------------------------------------------------------
FAMILY_FEATURES = {
    "llama": ("LlamaForCausalLM", "llama"),
    "qwen2": ("Qwen2ForCausalLM", "qwen2"),
    "mistral": ("MistralForCausalLM", "mistral"),
    "qwen3_moe": ("Qwen3MoeForCausalLM", "qwen3_moe"),
}


@pytest.mark.parametrize("family", list(FAMILY_FEATURES))
def test_each_family_loads_in_transformers_with_no_missing_keys(family):
    path = tiny_model_path(family=family)
    raw = json.loads((path / "config.json").read_text())
    assert raw["architectures"] == [FAMILY_FEATURES[family][0]]
    assert raw["model_type"] == FAMILY_FEATURES[family][1] and raw["tie_word_embeddings"] is False
    m, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert type(m).__name__ == raw["architectures"][0]
    if family == "llama":  # the released-checkpoint spelling, next to transformers 5's
        assert (
            raw["rope_scaling"]["rope_type"] == "llama3" and "rope_theta" not in raw["rope_scaling"]
        )
    if family == "qwen3_moe":
        assert raw["num_experts"] == 8 and "model.layers.0.mlp.experts.7.up_proj.weight" in _keys(
            path
        )
    if family == "qwen2":
        assert "model.layers.0.self_attn.q_proj.bias" in _keys(path)


@pytest.mark.parametrize("name", sorted(TINY_VARIANTS))
def test_named_variants_build_the_shape_they_name(name):
    overrides = TINY_VARIANTS[name]
    raw = json.loads((tiny_model_path(**overrides) / "config.json").read_text())
    assert {k: raw[k] for k in overrides} == overrides


def test_unknown_family_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="family='gpt2' is unknown"):
        make_tiny_model(tmp_path, family="gpt2")


@pytest.mark.parametrize("name", ["LLAMA_3_2_1B", "QWEN2_5_0_5B", "QWEN3_30B_A3B"])
def test_random_models_of_real_families_have_hf_names_and_shapes(tmp_path, name):
    """make_random_model writes every tensor transformers expects (real shapes scaled down)."""
    from nanovllm.testing import random_model

    small = dict(
        getattr(random_model, name),
        hidden_size=64,
        num_hidden_layers=2,
        intermediate_size=96,
        vocab_size=512,
        max_position_embeddings=2048,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
    )
    if "num_experts" in small:
        small.update(num_experts=4, moe_intermediate_size=32)
    path = random_model.make_random_model(tmp_path, small, dtype="float32")
    m, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert type(m).__name__ == small["architectures"][0]
