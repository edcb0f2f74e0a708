"""A tiny random-weight checkpoint in Hugging Face format, built offline in about a second.

Contract:
- `make_tiny_model(path, family="qwen3")` writes config.json, model.safetensors,
  generation_config.json and tokenizer files that `AutoTokenizer` /
  `AutoModelForCausalLM.from_pretrained(path)` load with no missing or unexpected keys. The same
  seed and overrides give byte-identical files. `family` is one of `families.FAMILIES` (qwen3,
  llama, qwen2, mistral, qwen3_moe); each has its own tiny shape.
- The weights are re-drawn with a large std (not HF's 0.02), so logits are well spread and greedy
  argmax does not flip between implementations on rounding noise.
- The tokenizer is a byte-level BPE (fixed size `TOKENIZER_VOCAB_SIZE`) trained on the corpus below;
  any ASCII text round-trips. The model's vocab_size may be larger (padded rows), as in real Qwen3.
  `extra_corpus=MULTIBYTE_CORPUS` (tokenizer_text.py) adds non-ASCII text to the training text, so
  the vocabulary holds multi-byte characters, some as one token and some split over several.
- `tiny_model_path(**overrides)` builds once into a cache dir and reuses it (through
  `checkpoint.build_cached`: one build at a time under a file lock, and the directory appears
  atomically, so concurrent test processes build once and never see half a checkpoint).

Nothing here is imported by the engine; tests and notebooks use it when `NANOVLLM_MODEL` is unset.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from nanovllm.teaching import hf_format
from nanovllm.teaching.hf_format import (
    CHAT_TEMPLATE,
    ENDOFTEXT,
    IM_END,
    IM_START,
    write_model,
    write_tokenizer,
)
from nanovllm.testing.checkpoint import build_cached
from nanovllm.testing.families import HF_CLASSES, TINY_FAMILY_CONFIGS, check_family
from nanovllm.testing.tokenizer_text import CORPUS

SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)  # trained first, so their ids are 0, 1, 2
TOKENIZER_VOCAB_SIZE = 448

TINY_CONFIG: dict[str, Any] = {
    "vocab_size": 512,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "intermediate_size": 128,
    "max_position_embeddings": 2048,
    "rope_theta": 1e6,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
    "attention_bias": False,
    "bos_token_id": SPECIAL_TOKENS.index(ENDOFTEXT),
    "eos_token_id": SPECIAL_TOKENS.index(ENDOFTEXT),
    "torch_dtype": "float32",
}

WEIGHT_STD = 0.2  # linear and embedding weights; logits then have std ~1.5 over the vocab
NORM_STD = 0.1  # norm weights are 1 + NORM_STD * randn, so q_norm / k_norm are not the identity


def make_tiny_model(
    path: str | os.PathLike,
    *,
    family: str = "qwen3",
    seed: int = 0,
    extra_corpus: str = "",
    **config_overrides: Any,
) -> Path:
    """Write a random-weight checkpoint of `family` (config, safetensors, tokenizer) into `path`.

    `config_overrides` replace keys of `TINY_CONFIG` and the family's `TINY_FAMILY_CONFIGS`;
    unknown keys pass through to the HF config. `torch_dtype` (or `dtype`) also sets the dtype of
    the saved weights. `extra_corpus` is added to the tokenizer's training text.
    """
    check_family(family)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    merged = _merged(config_overrides, family)
    tokenizer = _build_tokenizer(merged["max_position_embeddings"], CORPUS + extra_corpus)
    config, dtype = _build_config(config_overrides, len(tokenizer), family)
    _save_model(config, dtype, path, seed, len(tokenizer), family)
    write_tokenizer(tokenizer, path, CHAT_TEMPLATE)
    return path


def tiny_model_path(
    *, family: str = "qwen3", seed: int = 0, extra_corpus: str = "", **config_overrides: Any
) -> Path:
    """Build the tiny model once per (family, seed, overrides, builder version) and return the
    cached path. The cache root is `$NANOVLLM_CACHE` if set, else `~/.cache/nanovllm`.
    """
    check_family(family)
    key = config_overrides if family == "qwen3" else {"family": family, **config_overrides}
    if extra_corpus:
        key = {**key, "extra_corpus": extra_corpus}
    return build_cached(
        f"tiny-{_cache_key(seed, key)}",
        lambda tmp: make_tiny_model(
            tmp, family=family, seed=seed, extra_corpus=extra_corpus, **config_overrides
        ),
    )


def _merged(overrides: dict[str, Any], family: str = "qwen3") -> dict[str, Any]:
    cfg = {**TINY_CONFIG, **TINY_FAMILY_CONFIGS[family], **overrides}
    if "dtype" in overrides:  # transformers>=5 spelling; keep one key
        cfg["torch_dtype"] = cfg.pop("dtype")
    return cfg


def _cache_key(seed: int, overrides: dict[str, Any]) -> str:
    import transformers

    here = Path(__file__).parent  # editing this builder, its families or the writers: a new key
    files = [here / f for f in ("tiny.py", "families.py", "checkpoint.py", "tokenizer_text.py")]
    source = b"".join(Path(f).read_bytes() for f in [*files, hf_format.__file__])
    blob = json.dumps([seed, overrides, transformers.__version__], sort_keys=True, default=repr)
    return hashlib.sha256(source + blob.encode()).hexdigest()[:16]


def _build_config(overrides: dict[str, Any], tokenizer_vocab: int, family: str = "qwen3"):
    import transformers

    config_class, model_class = HF_CLASSES[family]
    cfg = _merged(overrides, family)
    if cfg["vocab_size"] < tokenizer_vocab:
        raise ValueError(
            f"vocab_size={cfg['vocab_size']} is smaller than the tiny tokenizer's vocabulary of "
            f"{tokenizer_vocab} tokens; pass vocab_size>={tokenizer_vocab}"
        )
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    if heads % kv_heads:
        raise ValueError(
            f"num_attention_heads={heads} is not a multiple of num_key_value_heads={kv_heads}; "
            f"pass a num_key_value_heads that divides {heads}"
        )
    dtype = cfg.pop("torch_dtype")
    cfg.setdefault("architectures", [model_class])
    if family.startswith("qwen"):  # as in released Qwen configs
        cfg.setdefault("max_window_layers", cfg["num_hidden_layers"])
    cfg.setdefault("initializer_range", WEIGHT_STD)  # what _reinit_ draws with, not HF's 0.02
    # transformers 5 renamed torch_dtype to dtype and warns on the old name
    dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    config = getattr(transformers, config_class)(**{dtype_key: dtype}, **cfg)
    return config, str(dtype).removeprefix("torch.")


def _save_model(config, dtype: str, path: Path, seed: int, n_tokens: int, family: str) -> None:
    import torch
    import transformers

    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG alone
        torch.manual_seed(seed)
        model = getattr(transformers, HF_CLASSES[family][1])(config)
        _reinit_(model, torch.Generator().manual_seed(seed), n_tokens)
    write_model(model, config, dtype, path)


def _reinit_(model, gen, n_tokens: int) -> None:
    """Redraw every parameter: N(0, WEIGHT_STD) for matrices, 1 + N(0, NORM_STD) for norms.

    Names are visited in sorted order so the draw does not depend on module registration order;
    tied parameters appear once in `named_parameters()`, so tying survives. Embedding and lm_head
    rows past the tokenizer (ids >= n_tokens) are zero: their logit is 0, far below the usual
    maximum, so greedy output stays decodable (sampling still reaches them rarely, as it could
    with a real model's padded vocab).
    """
    import torch

    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + NORM_STD * noise)
            elif name.endswith(".bias"):
                p.copy_(NORM_STD * noise)
            else:
                p.copy_(WEIGHT_STD * noise)
        model.get_input_embeddings().weight[n_tokens:] = 0.0
        model.get_output_embeddings().weight[n_tokens:] = 0.0


def _build_tokenizer(model_max_length: int, corpus: str = CORPUS):
    """Train the byte-level BPE on `corpus` (deterministic: ties break on the pair itself)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([corpus], trainer=trainer)
    assert tok.get_vocab_size() == TOKENIZER_VOCAB_SIZE, tok.get_vocab_size()
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        additional_special_tokens=[IM_START, IM_END],
        clean_up_tokenization_spaces=False,
        model_max_length=model_max_length,
        chat_template=CHAT_TEMPLATE,
    )
