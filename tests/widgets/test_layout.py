"""The package's shape (widgets/): a facade under 200 lines and files of a few hundred lines. What
widgets may import (the public API, ``nanovllm.engine.observe``, ``nanovllm.bridge``), that views
import neither the LLM nor the workbench, and that widgets has no import circles are import-linter
contracts in pyproject.toml: ``lint-imports`` checks them in CI, and the last test here runs them
where import-linter is installed (the dev extra)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import widgets

ROOT = Path(widgets.__file__).parent


def test_the_facade_is_small_and_so_is_every_file():
    assert len((ROOT / "workbench.py").read_text().splitlines()) < 200
    sizes = {f.name: len(f.read_text().splitlines()) for f in ROOT.rglob("*.py")}
    assert max(sizes.values()) <= 300, sizes


def test_the_import_contracts_hold():
    pytest.importorskip("importlinter", reason="import-linter is the dev extra (CI installs it)")
    lint = Path(sys.executable).with_name("lint-imports")
    command = [str(lint)] if lint.exists() else ["lint-imports"]
    done = subprocess.run(
        command, cwd=ROOT.parent, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " 0 broken" in done.stdout
