"""Helpers for tests and notebooks; the engine never imports this package.

- `tiny_model_path()`: a random-weight tiny Qwen3 (about a second to build, once per machine,
  cached on disk under a file lock); equivalence and property tests use it.
- `hf_oracle.assert_matches_transformers(path)`: nanovllm's greedy tokens and logprobs against
  Hugging Face transformers on the same checkpoint (imported on its own: it loads transformers).

The trained default model is not here: it ships in `nanovllm.teaching` (`teaching_model_path()`).
"""

from __future__ import annotations

from nanovllm.testing.families import FAMILIES
from nanovllm.testing.tiny import TINY_CONFIG, make_tiny_model, tiny_model_path

__all__ = [
    "FAMILIES",
    "TINY_CONFIG",
    "make_tiny_model",
    "tiny_model_path",
]
