"""The teaching model: the product's default model, trained by this project and shipped with it.

A tiny Qwen3 (word-level tokenizer, a few MB in bfloat16) trained with torch on a synthetic corpus
the project generates: counting in digits and words, the alphabet in both cases, days, months,
times tables, sentences about the engine, and facts asked in several wordings. Its greedy text can
be checked ("one two three four" -> "five six seven", "7 x 7 =" -> "49, 7 x 8 = 56"), so the
notebooks and the workbench assert what they show.

Contract:
- `teaching_model_path()` returns the shipped checkpoint directory (`model/`, package data: a
  non-editable install carries it too) at once, on every machine: nothing is built or cached, and
  every machine loads the same weights. It holds config.json, generation_config.json,
  model.safetensors, tokenizer.json, tokenizer_config.json (the chat template inline) and
  `teaching.json`, the record: the recipe, the corpus's sha256, each file's sha256 and size, and
  the held-out score (`record.py`).
- The pieces: `recipe` (what the weights depend on), `corpus` and `facts` (the training text),
  `held_out` (the prompts nobody trained on, and the scoring), `train` (tokenizer, training loop,
  writing the checkpoint), `evaluate` (the held-out score through this engine), `hf_format` (the
  Hugging Face file writers, shared with `nanovllm.testing`).
- `python -m nanovllm.teaching train` retrains from the recipe (minutes on a CPU core) and
  compares the result with the shipped model; see `__main__.py`.

Importing this package imports neither torch nor transformers.
"""

from __future__ import annotations

from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent / "model"


def teaching_model_path() -> Path:
    """The shipped teaching checkpoint's directory (see the module docstring)."""
    return MODEL_DIR


__all__ = ["MODEL_DIR", "teaching_model_path"]
