"""Shared fixtures: tiny random-weight checkpoints (equivalence and property tests, each built once
per machine and cached on disk) and the trained teaching model (shipped with the package)."""

from __future__ import annotations

import os

import pytest

SECOND_CONFIG = dict(
    num_attention_heads=8,
    num_key_value_heads=2,
    head_dim=8,
    hidden_size=64,
    num_hidden_layers=3,
    tie_word_embeddings=False,
    intermediate_size=96,
)


def pytest_configure(config):
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model() -> str:
    """A real model via NANOVLLM_MODEL, else the built-in tiny Qwen3."""
    if os.environ.get("NANOVLLM_MODEL"):
        return os.environ["NANOVLLM_MODEL"]
    from nanovllm.testing import tiny_model_path

    return str(tiny_model_path())


@pytest.fixture(scope="session")
def second_model() -> str:
    """Other head counts (8 q / 2 kv heads, GQA 4), 3 layers, untied embeddings."""
    from nanovllm.testing import tiny_model_path

    return str(tiny_model_path(**SECOND_CONFIG))


@pytest.fixture(scope="session")
def teaching_model() -> str:
    """The trained teaching model, shipped with the package (nothing to build)."""
    from nanovllm.teaching import teaching_model_path

    return str(teaching_model_path())


@pytest.fixture(scope="session")
def multibyte_model() -> str:
    """The tiny Qwen3 with a tokenizer that also learned non-ASCII text (MULTIBYTE_CORPUS)."""
    from nanovllm.testing.tiny import tiny_model_path
    from nanovllm.testing.tokenizer_text import MULTIBYTE_CORPUS

    return str(tiny_model_path(extra_corpus=MULTIBYTE_CORPUS))


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
