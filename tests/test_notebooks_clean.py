"""The tutorial notebooks are committed clean: no outputs, no execution counts, no widget state.

Cells teach with asserts, not with stored outputs (nbval would skip comparing a cell that was never
run anyway). The ``# NBVAL_CHECK_OUTPUT`` exception below stays available but is unused: a notebook
committed with outputs fails the project's before-stop checks.

After running a notebook in Jupyter, clean it in place::

    python tests/test_notebooks_clean.py notebooks/02_paged_kv_cache.ipynb
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"
PLAIN_OUTPUTS = {"stream", "execute_result"}
ENGINE_CLOSERS = ("close_workbench()", ".close()", "with LLM(")


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def is_checked(cell) -> bool:
    return cell.cell_type == "code" and cell.source.lstrip().startswith(CHECK_MARKER)


def strip(nb):
    """The committed form of ``nb``: outputs, counts and widget state removed, except the outputs
    (and counts) of checked cells."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("widgets", None)
        cell.metadata.pop("execution", None)  # timestamps written by nbclient / JupyterLab
        if cell.cell_type != "code":
            continue
        if is_checked(cell):
            cell.outputs = [_plain(o) for o in cell.outputs]
        else:
            cell.outputs, cell.execution_count = [], None
    return nb


def _plain(output):
    """A checked cell's output, reduced to its text (an HTML or widget view is dropped)."""
    output = copy.deepcopy(output)
    if output.output_type == "execute_result":
        output.data = {"text/plain": output.data["text/plain"]}
        output.metadata = {}
    return output


def test_the_series_is_there():
    names = [p.name for p in notebooks()]
    assert [n[:3] for n in names] == [f"{i:02d}_" for i in range(1, len(names) + 1)], names
    assert len(names) >= 7


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_notebook_is_committed_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert "widgets" not in nb.metadata, f"{path.name}: widget state in metadata; run the cleaner"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for i, cell in enumerate(nb.cells):
        where = f"{path.name} cell {i}"
        assert "widgets" not in cell.metadata, f"{where}: widget state in cell metadata"
        if cell.cell_type != "code":
            continue
        if not is_checked(cell):
            assert cell.outputs == [], f"{where}: has outputs; run the cleaner (see this module's doc)"
            assert cell.execution_count is None, f"{where}: has an execution count"
            continue
        assert cell.outputs, f"{where}: checked cell has no stored output, so nbval would skip it"
        assert cell.execution_count is not None, f"{where}: checked cell must keep its count"
        for out in cell.outputs:
            assert out.output_type in PLAIN_OUTPUTS, f"{where}: checked cell stores a {out.output_type}"
            if out.output_type == "stream":
                assert out.name == "stdout", f"{where}: checked cell writes to {out.name}"
            else:
                assert set(out.data) == {"text/plain"}, f"{where}: checked cell stores {set(out.data)}"
    assert strip(nb) == nb, f"{path.name}: not in committed form; run the cleaner"


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_notebook_closes_its_engines(path):
    """No worker process or engine may outlive a notebook: after the last cell that builds an
    engine, some cell (that one included) closes it."""
    nb = nbformat.read(path, as_version=4)
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    builds = [i for i, s in enumerate(sources) if "LLM(" in s or "workbench(" in s]
    if builds:
        rest = "\n".join(sources[builds[-1]:])
        assert any(closer in rest for closer in ENGINE_CLOSERS), (
            f"{path.name}: no llm.close() / widgets.close_workbench() after the last engine is built"
        )


def main(paths: list[str]) -> None:
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        missing = [i for i, c in enumerate(nb.cells) if is_checked(c) and not c.outputs]
        nbformat.write(strip(nb), p)
        note = f" (checked cells {missing} have no output: run the notebook first)" if missing else ""
        print(f"cleaned {p}{note}")


if __name__ == "__main__":
    main(sys.argv[1:] or [str(p) for p in notebooks()])
