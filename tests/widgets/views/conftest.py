"""Fixtures of the views' tests (the workbench ``wb`` is tests/widgets/conftest.py's)."""

from __future__ import annotations

import pytest
from widget_helpers import BS

from nanovllm import LLM


@pytest.fixture
def llm(tiny_model):
    """An engine alone (48 blocks of BS tokens), for the observe functions the views draw from."""
    engine = LLM(tiny_model, kvcache_block_size=BS, num_kvcache_blocks=48, max_model_len=256)
    yield engine
    engine.close()
