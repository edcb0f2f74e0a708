"""Helpers for tests and notebooks; the engine never imports this package."""

from __future__ import annotations

from nanovllm.testing.families import FAMILIES
from nanovllm.testing.tiny import TINY_CONFIG, make_tiny_model, tiny_model_path

__all__ = ["FAMILIES", "TINY_CONFIG", "make_tiny_model", "tiny_model_path"]
