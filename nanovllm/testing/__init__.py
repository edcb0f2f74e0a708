"""Helpers for tests and notebooks; the engine never imports this package.

- `tiny_model_path()`: a random-weight tiny Qwen3 (about a second to build, once per machine,
  cached on disk under a file lock); equivalence and property tests use it.
- `teaching_model_path`: a re-export of `nanovllm.teaching.teaching_model_path` (the shipped,
  trained default model) kept only for `widgets/`, which imports it from here until the workbench
  restructure lands; it is then switched to `nanovllm.teaching` and this re-export removed. New
  code imports it from `nanovllm.teaching`.
"""

from __future__ import annotations

from nanovllm.teaching import teaching_model_path
from nanovllm.testing.families import FAMILIES
from nanovllm.testing.tiny import TINY_CONFIG, make_tiny_model, tiny_model_path

__all__ = [
    "FAMILIES",
    "TINY_CONFIG",
    "make_tiny_model",
    "teaching_model_path",
    "tiny_model_path",
]
