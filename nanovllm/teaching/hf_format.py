"""Writing a generated checkpoint in Hugging Face format: weights, configs, tokenizer files.

Contract:
- `write_model(model, config, dtype, path)` saves a transformers model as `dtype` safetensors with
  config.json and generation_config.json that both transformers 4.x and 5.x (and our loader, which
  reads config.json directly) understand; `write_tokenizer(tokenizer, path, chat_template)` does the
  same for a fast tokenizer. Every file is world-readable (a cache may be shared).
- `CHAT_TEMPLATE` is the Qwen-style template every generated checkpoint ships; `ENDOFTEXT`,
  `IM_START`, `IM_END` are its special tokens.

Used by the teaching model's trainer (`nanovllm.teaching.train`) and by the random checkpoints of
`nanovllm.testing`; the engine never imports it.
"""

from __future__ import annotations

import json
from pathlib import Path

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def write_model(model, config, dtype: str, path: Path) -> None:
    """Save `model` as `dtype` (e.g. "float32") safetensors, config and generation config."""
    import torch
    from transformers import GenerationConfig
    from transformers.utils import logging as hf_logging

    model.to(getattr(torch, dtype))
    eos = config.eos_token_id
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=eos,
        pad_token_id=eos[0] if isinstance(eos, list) else eos,
        do_sample=False,
    )
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Writing model shards" bar per build is noise
    try:
        model.save_pretrained(path, safe_serialization=True)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
    _portable_model_config(path, config, dtype)
    _readable(path)


def write_tokenizer(tokenizer, path: Path, chat_template: str) -> None:
    tokenizer.save_pretrained(path)
    _portable_tokenizer_config(path, chat_template)
    _readable(path)


def _readable(path: Path) -> None:
    for file in path.iterdir():
        file.chmod(0o644)  # safetensors writes 0600; a shared cache must be readable


def _portable_model_config(path: Path, config, dtype: str) -> None:
    """Add the keys real checkpoints carry and transformers 5 no longer writes.

    transformers>=5 writes `dtype`, `rope_parameters` and (MoE) `num_local_experts`; released
    config.json files (and transformers 4.x) use `torch_dtype`, a top-level `rope_theta`, a
    `rope_scaling` dict without the theta (Llama 3) and `num_experts` (Qwen3-MoE). Keep both
    spellings, so an engine reading config.json directly sees what a downloaded model shows.
    """
    file = path / "config.json"
    data = json.loads(file.read_text())
    rope = data.get("rope_parameters") or {}
    data.setdefault("rope_theta", rope.get("rope_theta", getattr(config, "rope_theta", None)))
    data["torch_dtype"] = dtype
    scaled = rope.get("rope_type", "default") != "default"
    data.setdefault(
        "rope_scaling", {k: v for k, v in rope.items() if k != "rope_theta"} if scaled else None
    )
    if "num_local_experts" in data:
        data.setdefault("num_experts", data["num_local_experts"])
    file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _portable_tokenizer_config(path: Path, chat_template: str) -> None:
    """Name the class `PreTrainedTokenizerFast` and inline the chat template, as 4.x expects.

    transformers>=5 writes `tokenizer_class: TokenizersBackend` (unknown to 4.x) and puts the
    template in chat_template.jinja; both versions read the inline form.
    """
    file = path / "tokenizer_config.json"
    data = json.loads(file.read_text())
    data["tokenizer_class"] = "PreTrainedTokenizerFast"
    data["chat_template"] = chat_template
    specials = data.pop("extra_special_tokens", None) or data.get("additional_special_tokens")
    data["additional_special_tokens"] = list(specials or [IM_START, IM_END])
    data.pop("backend", None)
    file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    (path / "chat_template.jinja").unlink(missing_ok=True)
