"""Fixtures of the workbench's tests (tests/widgets/ mirrors widgets/). The helpers they share
are in ``widget_helpers.py``, importable from every folder below this one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # widget_helpers

from widgets import TEACHING_DEFAULTS, Workbench  # noqa: E402


@pytest.fixture
def wb(tiny_model):
    """A workbench on the tiny model, its whole history in the views, a snapshot every step."""
    bench = Workbench(tiny_model, TEACHING_DEFAULTS, window=1000, snapshot_every_step=True)
    yield bench
    bench.close()
