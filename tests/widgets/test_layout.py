"""The package's shape (widgets/): no import circles, a facade under 200 lines, files of a few
hundred lines, and the engine read only through ``nanovllm.engine.observe``, ``nanovllm.bridge`` and
the public API (import-linter's widgets contract holds the last one in CI too)."""

from __future__ import annotations

import ast
from pathlib import Path

import widgets

ROOT = Path(widgets.__file__).parent
# + `nanovllm` itself; nanovllm.bridge: vLLM's KV events and metrics (watcher.py, attach.py)
ALLOWED = (
    "nanovllm.engine.observe",
    "nanovllm.errors",
    "nanovllm.replay",
    "nanovllm.teaching",
    "nanovllm.bridge",
)


def modules() -> dict[str, Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        parts = f.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imports(name: str, path: Path) -> list[str]:
    """Every module ``name`` imports (TYPE_CHECKING and function-level imports included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            module = ".".join(base + [node.module or ""]) if node.level else node.module
            found += [module.rstrip(".")] + [f"{module}.{a.name}" for a in node.names]
    return found


def test_no_import_circles():
    mods = modules()
    graph = {}
    for name, path in mods.items():
        targets = set()
        for t in imports(name, path):
            while t and t not in mods:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):  # not its own package
                targets.add(t)
        graph[name] = targets
    done, on_path = set(), []

    def visit(m):
        assert m not in on_path, " -> ".join([*on_path[on_path.index(m) :], m])
        if m in done:
            return
        on_path.append(m)
        for t in graph[m]:
            visit(t)
        on_path.pop()
        done.add(m)

    for m in graph:
        visit(m)


def test_the_facade_is_small_and_so_is_every_file():
    assert len((ROOT / "workbench.py").read_text().splitlines()) < 200
    sizes = {f.name: len(f.read_text().splitlines()) for f in ROOT.rglob("*.py")}
    assert max(sizes.values()) <= 300, sizes


def test_the_engine_is_read_through_observe_and_the_public_api_only():
    for name, path in modules().items():
        for t in imports(name, path):
            if t.startswith("nanovllm"):
                assert (
                    t.split(".")[:2] == ["nanovllm"]
                    or t.startswith(ALLOWED)
                    or (t in ("nanovllm.LLM", "nanovllm.SamplingParams"))
                ), (name, t)
                assert not t.startswith(("nanovllm.engine.core", "nanovllm.engine.runner")), t


def test_the_views_know_no_engine():
    """A view draws from a DrawContext (data); it never imports the LLM or the workbench."""
    for name, path in modules().items():
        if name.startswith("widgets.views"):
            for t in imports(name, path):
                assert t not in ("nanovllm", "nanovllm.LLM", "nanovllm.llm"), (name, t)
                assert not t.startswith(("widgets.workbench", "widgets.stage", "widgets.driver")), t
