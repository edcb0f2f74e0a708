"""The views' one interface (widgets/views/base.py): the registry's views all draw from a
``DrawContext`` (no engine in it), a view that fails shows it while the others go on, and the
status line says which."""

from __future__ import annotations

import asyncio

import numpy as np
from widget_helpers import GREEDY_12, LONG, PROMPT, SCRIPT, pressure, until

from nanovllm.engine.observe.prefix_tree import prefix_tree
from nanovllm.engine.observe.snapshot import EngineSnapshot
from widgets.model.history import Frame, History
from widgets.model.selection import Selection
from widgets.views import REGISTRY, DrawContext, View, ViewSetup, view_classes
from widgets.views.prefix_tree import MIN_HEIGHT


def test_the_registry_names_each_view_once():
    classes = view_classes()
    assert len(classes) == len(REGISTRY) and all(issubclass(c, View) for c in classes)
    for key in ("name", "attribute"):
        assert len({getattr(c, key) for c in classes}) == len(classes)
    assert {c.column for c in classes} <= {"left", "right", "wide"}


def test_a_failing_view_shows_its_error_and_the_others_still_draw(wb, monkeypatch):
    pressure(wb, 2)
    wb.step(2)

    def broken(ctx):
        raise ValueError("a bug in the timing view")

    monkeypatch.setattr(wb.timing_view, "draw", broken)
    wb.step(1)
    view = wb.timing_view
    assert view.error == "ValueError: a bug in the timing view"
    assert view.failure.layout.display == "block" and "<details" in view.failure.value
    assert "Traceback" in view.failure.value and "broken" in view.failure.value  # on demand
    status = wb.controls.status.value
    assert "the timing view failed: ValueError: a bug in the timing view" in status
    assert "Step 2</b>" in wb.metrics_panel.html  # the others drew step 2
    assert wb.block_view.figure.layout.title.text.startswith("KV cache blocks after step 2")
    monkeypatch.undo()  # fixed: the failure line and the status error go
    wb.step(1)
    assert view.error is None and view.failure.layout.display == "none"
    assert "failed" not in wb.controls.status.value


def test_an_error_in_the_workbenchs_observer_is_shown_not_swallowed(wb, monkeypatch):
    """A History that cannot take a step (here a broken append) is said in the status line with
    its traceback, and the engine goes on."""
    pressure(wb, 1)

    def broken(frame):
        raise IndexError("pop from an empty deque")

    monkeypatch.setattr(wb.history, "append", broken)
    wb.llm.step()
    status = wb.controls.status.value
    assert "could not record step 0: IndexError: pop from an empty deque" in status
    assert "<details" in status and "Traceback" in status


def test_a_learners_generate_runs_to_its_end_whatever_fails_in_the_workbench(wb, monkeypatch):
    """``generate()`` ends in ObserverError when an observer raised (llm.py): the workbench's
    observer must not raise one. A broken view, a broken History, a broken context:
    each is shown in the status line, and every ``generate()`` returns all its outputs."""
    wb.gate.interval, wb.gate.max_share = 0.0, float("inf")  # a frame at every step

    def broken(*args):
        raise ValueError("a bug")

    def generate() -> str:
        outs = wb.llm.generate([PROMPT, LONG], GREEDY_12, use_tqdm=False)
        assert [len(o.outputs[0].token_ids) for o in outs] == [12, 12]
        return wb.controls.status.value

    monkeypatch.setattr(wb.timing_view, "draw", broken)
    assert "the timing view failed: ValueError: a bug" in generate()
    assert "Step 11</b>" in wb.metrics_panel.html  # the other views drew every step
    monkeypatch.undo()
    monkeypatch.setattr(wb.stage, "context", broken)  # around the views
    status = generate()
    assert "could not draw step 23: ValueError: a bug" in status and "Traceback" in status
    monkeypatch.undo()
    monkeypatch.setattr(wb.history, "append", broken)  # in the observer, before any drawing
    # (said anew at every step: the last one, 35, stays)
    assert "could not record step 35: ValueError: a bug" in generate()
    monkeypatch.undo()
    wb.llm.generate([PROMPT], GREEDY_12, use_tqdm=False)
    assert "a bug" not in wb.controls.status.value  # drawn again: the errors are gone


def test_a_run_from_the_run_button_ends_whatever_a_view_raises(wb, monkeypatch):
    """Run (the toggle: a task on the kernel's loop) with a view that raises at every frame: the
    run steps until every request finished, the other views show its last step, the broken one
    its error with the traceback a click away, and the status line says which view."""
    ids = pressure(wb, 3, max_tokens=8)
    wb.gate.interval, wb.gate.max_share = 0.0, float("inf")  # a frame at every step

    def broken(ctx):
        raise KeyError("odd data")

    monkeypatch.setattr(wb.token_budget_view, "draw", broken)

    async def cell():
        wb.controls.run_toggle.value = True
        await until(lambda: not wb.running)

    asyncio.run(cell())
    wb.flush()
    assert not wb.llm.has_unfinished() and len(wb.history) >= 8
    snap = wb.llm.snapshot()
    assert {s.seq_id for s in snap.sequences if s.finish_reason == "length"} == set(ids)
    last = wb.history.last_step
    assert f"Step {last}</b>" in wb.metrics_panel.html  # the others drew the last step
    assert wb.timeline_view.figure.data[0].x[-1] == str(last)
    view = wb.token_budget_view
    assert view.error == "KeyError: 'odd data'" and "Traceback" in view.failure.value
    assert "the token_budget view failed: KeyError" in wb.controls.status.value
    assert "stopped" not in wb.controls.status.value  # the run was not cut short


def test_a_view_that_failed_half_way_draws_in_full_at_the_next_frame(wb, monkeypatch):
    """A view that remembers what it drew (to skip equal redraws) and failed half way through a
    draw must not skip the next one: its figure would stay half drawn (here the prefix tree's
    markers moved but their hovers are the last step's) while its error line is cleared."""
    pressure(wb, 2)
    wb.step(2)
    view = wb.prefix_tree_view

    def broken(tree, node):
        raise ValueError("odd data in a hover")

    monkeypatch.setattr(view, "_hover", broken)
    wb.step(16)  # the tree grew (a block filled): markers set, then the hovers fail
    assert view.error == "ValueError: odd data in a hover"
    monkeypatch.undo()
    wb.redraw()  # the same step, the same cache
    marks = view.figure.data[2]
    assert view.error is None and len(marks.hovertext) == len(marks.x) == len(view.tree.nodes)


def test_a_frame_that_fails_on_the_gates_timer_is_shown_not_lost(wb, monkeypatch):
    """A frame the gate sends later (its timer, on the kernel's loop) has no caller to raise to:
    its failure goes to the status line, not to asyncio's log."""
    lost = []

    async def cell():
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: lost.append(ctx))
        wb.gate.interval = 0.2  # the first step draws; the next waits for the timer
        pressure(wb, 1)
        wb.llm.step()
        monkeypatch.setattr(wb.stage, "context", lambda: 1 / 0)
        wb.llm.step()
        assert wb.gate.pending
        await until(lambda: not wb.gate.pending, timeout=wb.gate.gap + 5)

    asyncio.run(cell())
    assert not lost, lost
    assert "could not draw step 1: ZeroDivisionError" in wb.controls.status.value


def test_every_view_draws_from_data_alone():
    """A context built from hand-made records and snapshot, with no engine anywhere: what a
    vLLM KV-event subscriber (issue 26) will hand the same view classes."""
    h = History()
    for r in SCRIPT:
        h.append(Frame(r, _snapshot(r.step + 1), {"requests_added": 3}))
    setup = ViewSetup(num_blocks=8, block_size=16, window=10, token_budget=64)
    ctx = DrawContext.of_history(h, Selection(picked=1), window=10)
    for cls in view_classes():
        view = cls(setup)
        assert view.draw_safely(ctx) is None, (cls.__name__, view.error)
    tree_only = DrawContext(step=3)  # a source with a prefix tree and nothing else
    tree_only.prefix_tree = prefix_tree(_snapshot(4))
    view = dict((c.name, c) for c in view_classes())["prefix_tree"](setup)
    view.draw(tree_only)
    assert len(view.figure.data[2].x) == 3 and "3 hashed blocks" in view.figure.layout.title.text


def _snapshot(step: int) -> EngineSnapshot:
    """Eight blocks: a chain of three (0 -> 1 -> 2) held by seq 1, the rest free."""
    n = 8
    has_hash = np.array([True, True, True] + [False] * 5)
    return EngineSnapshot(
        step=step,
        block_size=16,
        block_state=np.array([1, 1, 1, 0, 0, 0, 0, 0], np.uint8),
        ref_count=np.array([1, 1, 1, 0, 0, 0, 0, 0], np.int32),
        has_hash=has_hash,
        owners={0: (1,), 1: (1,), 2: (1,)},
        token_range={0: (0, 16), 1: (16, 32), 2: (32, 48)},
        sequences=(),
        block_hash=np.array([11, 12, 13, 0, 0, 0, 0, 0], np.uint64),
        parent_hash=np.array([0, 11, 12, 0, 0, 0, 0, 0], np.uint64),
        has_parent=np.array([False, True, True] + [False] * 5),
        free_order=np.arange(3, n, dtype=np.int32),
        time=float(step),
    )


# An empty chart is its title line (which says why it is empty): the top margin it sits in
# (40 to 60 px) and a sliver of plot; the smallest chart with data is 200 px high, but the prefix
# tree, as high as its rows (one or two: MIN_HEIGHT, 160 px).
EMPTY_MAX_PX = 80
CHARTS = ("timeline", "timing", "token_budget", "block_table", "prefix_tree")


def test_an_empty_chart_is_a_title_line_and_grows_when_data_arrives(wb):
    """Before the first step, after a reset and with no request picked, a chart with nothing to
    draw shrank to no line of text: it kept its full height of blank (the prefix tree 260 px)."""

    def heights() -> dict[str, int]:
        return {n: wb.dashboard.view(n).figure.layout.height for n in CHARTS}

    def compact(name: str) -> bool:
        fig = wb.dashboard.view(name).figure
        axes = [*fig.select_xaxes(), *fig.select_yaxes()]
        return (
            fig.layout.height <= EMPTY_MAX_PX
            and not any(ax.visible for ax in axes)
            and fig.layout.showlegend is False
            and fig.layout.margin.autoexpand is False  # no margin pushed out by earlier data
        )

    assert all(compact(n) for n in CHARTS), heights()
    assert wb.block_view.figure.layout.height > 200  # the grid: its blocks, free or not
    for name in ("timeline", "timing", "token_budget"):  # the title says why it is empty
        assert "no steps yet" in wb.dashboard.view(name).figure.layout.title.text, name
    ids = pressure(wb, 2)
    wb.step(3)
    wb.pick(ids[0])
    assert not any(compact(n) for n in CHARTS), heights()
    assert min(h for n, h in heights().items() if n != "prefix_tree") >= 200, heights()
    assert heights()["prefix_tree"] >= MIN_HEIGHT > EMPTY_MAX_PX
    wb.reset()  # every request aborted, no step kept; the cache keeps its blocks: the tree stays
    assert [n for n in CHARTS if not compact(n)] == ["prefix_tree"], heights()
    wb.rebuild()  # a fresh engine: an empty cache, nothing picked
    assert all(compact(n) for n in CHARTS), heights()
    assert "Prefix cache: empty" in wb.prefix_tree_view.figure.layout.title.text


def test_an_empty_cache_view_is_a_title_line():
    from cache_helpers import cache_of, trunk_and_branches

    from widgets.views import CACHE_REGISTRY

    setup = ViewSetup(num_blocks=0, block_size=0)
    for cls in view_classes(CACHE_REGISTRY):
        view = cls(setup)
        if view.figure is None:
            continue
        view.draw(DrawContext())  # no source yet
        assert view.figure.layout.height <= EMPTY_MAX_PX, cls.__name__
        view.draw(DrawContext(cache=cache_of(trunk_and_branches())))
        assert view.figure.layout.height >= min(200, MIN_HEIGHT), cls.__name__
