"""Every notebook that uses the workbench ends with one that still works, and its frozen figures
show the step they were frozen at.

Each such notebook runs top to bottom in a fresh kernel (as "Run All" does); then one more cell, in
the same kernel, adds a request and steps the workbench, and compares every ``wb.freeze(...)`` the
notebook made with the data of its step.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
USES_WORKBENCH = sorted(
    p for p in NOTEBOOKS.glob("*.ipynb") if "widgets.workbench(" in p.read_text()
)

CHECK = """
import numpy as np
import widgets

wb = widgets.current_workbench()
assert wb is not None and not wb.closed, "the notebook closed its workbench"
rid = wb.add_request("Is the workbench still alive?", max_tokens=2)
records = wb.step()
assert records and records[0].admitted_ids == (rid,), records
assert wb.frozen, "the notebook shows no frozen figure"
for f in wb.frozen:
    if f.view == "blocks":
        z = np.asarray(f.figure.data[0].z, dtype=float).ravel()[: f.snapshot.num_blocks]
        assert f.snapshot.step == f.step + 1, (f, f.snapshot.step)  # the snapshot after that step
        assert z.astype(int).tolist() == f.snapshot.block_state.tolist(), f
    else:
        assert int(f.figure.data[0].x[-1]) == f.step, f  # the window ends at the frozen step
print("alive; frozen:", [(f.view, f.step) for f in wb.frozen])
"""


@pytest.mark.slow
@pytest.mark.parametrize("path", USES_WORKBENCH, ids=lambda p: p.name)
def test_notebook_ends_with_a_live_workbench_and_true_frozen_figures(path):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(CHECK))
    NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent.parent)}},
    ).execute()
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "alive; frozen:" in out, out
