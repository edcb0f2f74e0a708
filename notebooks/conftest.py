"""The notebooks run as tests (nbval); this skips those that need what the machine lacks.

``09_watching_vllm`` starts a real vLLM (the ``vllm`` extra, or ``NANOVLLM_VLLM_PYTHON`` pointing at
a Python that has it): without one its cells are skipped, with the reason, before a kernel starts.
With ``NANOVLLM_REQUIRE_VLLM`` set (CI) it runs anyway, and fails, saying why.
"""

from __future__ import annotations

import os

import pytest

NEEDS_VLLM = {"09_watching_vllm.ipynb"}


def pytest_collection_modifyitems(config, items):
    needing = [item for item in items if item.path.name in NEEDS_VLLM]
    if not needing or os.environ.get("NANOVLLM_REQUIRE_VLLM"):
        return
    from nanovllm.bridge.launch import has_vllm, vllm_python

    if has_vllm():
        return
    skip = pytest.mark.skip(
        reason=f"needs vLLM: {vllm_python()} cannot import vllm; pip install -e '.[vllm]', or "
        "point NANOVLLM_VLLM_PYTHON at a Python that has it (README, 'A real vLLM')"
    )
    for item in needing:
        item.add_marker(skip)
