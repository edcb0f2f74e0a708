"""The tutorial notebooks are committed clean: no outputs, no execution counts, no widget state.

Cells teach with asserts, not with stored outputs (nbval would skip comparing a cell that was never
run anyway). The ``# NBVAL_CHECK_OUTPUT`` exception below stays available but is unused: a notebook
committed with outputs fails the project's before-stop checks.

What is checked is what gets committed: the staged version of each notebook in the git index
(``git show :notebooks/X.ipynb``), not the file in the working tree. Jupyter autosaves a notebook
with its outputs as soon as it runs, so a user who ran the tutorials still passes
``python -m pytest``; a notebook that is not in the index yet (new, never ``git add``-ed) is checked
as it is in the working tree. Outside a git checkout (an unpacked sdist or tarball, or no ``git``
program) the working-tree files are checked instead.

Before committing a notebook you ran, strip its outputs in place and stage it::

    python tests/test_notebooks_clean.py notebooks/02_paged_kv_cache.ipynb   # or notebooks/*.ipynb
    git add notebooks/02_paged_kv_cache.ipynb
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"
PLAIN_OUTPUTS = {"stream", "execute_result"}
ENGINE_CLOSERS = ("close_workbench()", ".close()", "with LLM(")
HOW_TO_CLEAN = (
    "run `python tests/test_notebooks_clean.py <notebook>` and `git add <notebook>` "
    "(see this module's doc)"
)


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def _git(cwd: Path, *args: str) -> str | None:
    """``git args`` run in ``cwd``: its stdout, or None when it fails or there is no git program."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except OSError:
        return None
    return done.stdout.decode() if done.returncode == 0 else None


def committed_text(path: Path) -> tuple[str, str]:
    """The text of notebook ``path`` as it would be committed, and where it came from: the staged
    version in the git index (``"index"``); the working-tree file (``"working tree"``) when ``path``
    is not inside a git checkout or is not in the index yet."""
    path = Path(path).resolve()
    top = _git(path.parent, "rev-parse", "--show-toplevel")
    if top is not None:
        top_dir = Path(top.strip()).resolve()
        rel = path.relative_to(top_dir).as_posix()
        if _git(top_dir, "ls-files", "--cached", "--", rel):  # staged (or committed and unchanged)
            text = _git(top_dir, "show", f":{rel}")
            assert text is not None, f"git show :{rel} failed in {top_dir}"
            return text, "index"
    return path.read_text(encoding="utf-8"), "working tree"


def check_clean(path: Path) -> str:
    """Assert the committed form of notebook ``path`` (see ``committed_text``) is clean; returns
    where it was read from."""
    text, source = committed_text(path)
    name = f"{Path(path).name} ({source})"
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    assert "widgets" not in nb.metadata, f"{name}: widget state in metadata; {HOW_TO_CLEAN}"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for i, cell in enumerate(nb.cells):
        where = f"{name} cell {i}"
        assert "widgets" not in cell.metadata, (
            f"{where}: widget state in cell metadata; {HOW_TO_CLEAN}"
        )
        if cell.cell_type != "code":
            continue
        if not is_checked(cell):
            assert cell.outputs == [], f"{where}: has outputs; {HOW_TO_CLEAN}"
            assert cell.execution_count is None, f"{where}: has an execution count; {HOW_TO_CLEAN}"
            continue
        assert cell.outputs, f"{where}: checked cell has no stored output, so nbval would skip it"
        assert cell.execution_count is not None, f"{where}: checked cell must keep its count"
        for out in cell.outputs:
            assert out.output_type in PLAIN_OUTPUTS, (
                f"{where}: checked cell stores a {out.output_type}"
            )
            if out.output_type == "stream":
                assert out.name == "stdout", f"{where}: checked cell writes to {out.name}"
            else:
                assert set(out.data) == {"text/plain"}, (
                    f"{where}: checked cell stores {set(out.data)}"
                )
    assert strip(nb) == nb, f"{name}: not in committed form; {HOW_TO_CLEAN}"
    return source


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
    check_clean(path)


def _ran(nb):
    """``nb`` as Jupyter autosaves it after a run: outputs and execution counts in its code
    cells."""
    nb = copy.deepcopy(nb)
    for n, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = n + 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
    return nb


def test_check_reads_the_index_not_the_working_tree(tmp_path, monkeypatch):
    """A notebook run in Jupyter (outputs autosaved in the working tree) passes while its staged
    version is clean; staging the run version fails; outside git the working tree is checked."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no enclosing repo is found
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)
    clean = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# t"),
            nbformat.v4.new_code_cell("x = 1\nassert x == 1"),
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    repo, plain = tmp_path / "repo", tmp_path / "plain"
    (repo / "notebooks").mkdir(parents=True)
    plain.mkdir()
    path = repo / "notebooks" / "01_t.ipynb"

    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    nbformat.write(clean, path)
    subprocess.run(["git", "add", "notebooks/01_t.ipynb"], cwd=repo, check=True)
    assert check_clean(path) == "index"

    nbformat.write(_ran(clean), path)  # the user ran it: outputs in the working tree only
    assert check_clean(path) == "index"

    subprocess.run(["git", "add", "notebooks/01_t.ipynb"], cwd=repo, check=True)  # staged dirty
    with pytest.raises(AssertionError, match="has outputs"):
        check_clean(path)

    main([str(path)])  # the CLI cleans the working tree; staging it makes the check pass again
    subprocess.run(["git", "add", "notebooks/01_t.ipynb"], cwd=repo, check=True)
    assert check_clean(path) == "index"

    untracked = repo / "notebooks" / "02_new.ipynb"  # not in the index: its working-tree file
    nbformat.write(_ran(clean), untracked)
    with pytest.raises(AssertionError, match=r"02_new.ipynb \(working tree\) cell 1: has outputs"):
        check_clean(untracked)

    outside = plain / "01_t.ipynb"  # no git checkout: the working tree
    nbformat.write(clean, outside)
    assert check_clean(outside) == "working tree"
    nbformat.write(_ran(clean), outside)
    with pytest.raises(AssertionError, match="has outputs"):
        check_clean(outside)


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_notebook_closes_its_engines(path):
    """No engine built with ``LLM(...)`` may outlive a notebook: after the last cell that builds
    one, some cell (that one included) closes it. The kernel's workbench (``widgets.workbench()``)
    is the exception: a notebook ends with it alive, to explore (``test_notebooks_alive`` checks it
    works); it is closed with the kernel."""
    nb = nbformat.read(path, as_version=4)
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    builds = [i for i, s in enumerate(sources) if "LLM(" in s]
    if builds:
        rest = "\n".join(sources[builds[-1] :])
        assert any(closer in rest for closer in ENGINE_CLOSERS), (
            f"{path.name}: no llm.close() / `with LLM(...)` after the last engine is built"
        )


def main(paths: list[str]) -> None:
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        missing = [i for i, c in enumerate(nb.cells) if is_checked(c) and not c.outputs]
        nbformat.write(strip(nb), p)
        note = (
            f" (checked cells {missing} have no output: run the notebook first)" if missing else ""
        )
        print(f"cleaned {p}{note}")


if __name__ == "__main__":
    main(sys.argv[1:] or [str(p) for p in notebooks()])
