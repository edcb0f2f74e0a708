"""Shared fixtures: tiny random-weight checkpoints (equivalence and property tests, each built once
per machine and cached on disk) and the trained teaching model (shipped with the package)."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config):
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Triton runs interpreted on a machine without a GPU, and the switch must precede the first
    # `import triton`: set it here, before any test module is imported, so that which module is
    # collected first (tests/engine/ imports triton before tests/layers/ asks for the
    # interpreter) does not decide it.
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


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
    from nanovllm.testing.families import TINY_VARIANTS

    return str(tiny_model_path(**TINY_VARIANTS["gqa4"]))


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
