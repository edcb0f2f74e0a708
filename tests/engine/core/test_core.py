"""engine/core is pure Python: importing it pulls in neither torch nor numpy."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_neither_torch_nor_numpy():
    code = (
        "import sys\n"
        "import nanovllm.engine.core.batch, nanovllm.engine.core.block_manager\n"
        "import nanovllm.engine.core.events, nanovllm.engine.core.scheduler\n"
        "import nanovllm.engine.core.sequence\n"
        "heavy = sorted(m for m in ('torch', 'numpy') if m in sys.modules)\n"
        "print(','.join(heavy) or 'none')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "none", f"engine/core imported {out}"
