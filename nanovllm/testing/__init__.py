"""Helpers for tests and notebooks; the engine never imports this package.

- `tiny_model_path()`: a random-weight tiny Qwen3 (about a second to build); equivalence and
  property tests use it.
- `teaching_model_path()`: a tiny Qwen3 trained on the project's synthetic corpus (about a minute
  to build on two cores, once); the workbench and the notebooks use it, since its text is legible.
"""

from __future__ import annotations

from nanovllm.testing.families import FAMILIES
from nanovllm.testing.teaching import Recipe, teaching_model_path
from nanovllm.testing.tiny import TINY_CONFIG, make_tiny_model, tiny_model_path

__all__ = [
    "FAMILIES",
    "TINY_CONFIG",
    "Recipe",
    "make_tiny_model",
    "teaching_model_path",
    "tiny_model_path",
]
