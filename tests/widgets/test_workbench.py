"""The Workbench facade (widgets/workbench.py): the views follow a plain ``generate`` in a cell
and catch up once it returns; frozen figures keep their step; everything sent is JSON."""

from __future__ import annotations

import asyncio
import json

import numpy as np
from widget_helpers import GREEDY_12, LONG, PROMPT, grid_values, header, pressure, until

import widgets
from widgets import Workbench


def test_the_public_names_are_there(wb):
    for name in (
        "pick",
        "pick_block",
        "run_until",
        "replay",
        "freeze",
        "rebuild",
        "live",
        "show_step",
        "step",
        "run",
        "pause",
        "reset",
        "add_request",
        "abort",
        "flush",
    ):
        assert callable(getattr(wb, name)), name  # fmt: skip
    for name in (
        "block_view",
        "timeline_view",
        "timing_view",
        "metrics_panel",
        "block_table_view",
        "requests_panel",
        "prefix_tree_view",
        "history",
        "recorder",
        "controls",
        "widget",
        "replay_panel",
        "llm",
        "workload",
        "frozen",
        "renewed",
    ):
        assert getattr(wb, name) is not None, name  # fmt: skip
    assert {"block_view", "live", "history"} <= set(dir(wb))
    assert set(widgets.WORKBENCH_OPTIONS) == {
        "history_steps", "history_bytes", "redraw_interval", "window", "snapshot_every_step"
    }  # fmt: skip


def test_views_follow_a_plain_generate_step_by_step(wb):
    wb.gate.interval, wb.gate.max_share = 0.0, float("inf")  # a frame every step, to observe it
    drawn = []
    wb.llm.subscribe(lambda r: drawn.append(header(wb)))  # runs after the workbench's observer
    wb.llm.generate([PROMPT, LONG], GREEDY_12, use_tqdm=False)
    assert len(drawn) == 12 and drawn == [f"<div><b>Step {s}" for s in range(12)]


def test_views_catch_up_once_a_generate_cell_returns(wb):
    async def cell():
        wb.gate.interval = 0.2  # the first step draws; the rest wait for the gate's timer
        wb.llm.generate([PROMPT], GREEDY_12, use_tqdm=False)  # synchronous, as in a cell
        assert wb.gate.pending
        await until(lambda: not wb.gate.pending, timeout=wb.gate.gap + 5)  # the loop is free

    asyncio.run(cell())
    assert not wb.gate.pending and header(wb) == f"<div><b>Step {wb.history.last_step}"
    assert grid_values(wb) == wb.llm.snapshot().block_state.tolist()


def test_a_frozen_figure_keeps_its_step_while_the_live_view_moves_on(wb):
    pressure(wb, 3)
    wb.step()
    frozen = wb.freeze("blocks")
    at_freeze = wb.history.snapshot_at(frozen.step).block_state.tolist()
    wb.step(6)
    cells = np.asarray(frozen.figure.data[0].z, dtype=float).ravel()[: wb.block_view.num_blocks]
    assert cells.astype(int).tolist() == at_freeze != grid_values(wb)
    bundle = frozen._repr_mimebundle_()
    assert "application/vnd.plotly.v1+json" in bundle and wb.frozen == [frozen]
    assert wb.freeze("prefix_tree").view == "prefix_tree"  # any view with a figure
    try:
        wb.freeze("grid")
    except ValueError as e:
        assert "choose one of ['blocks', 'timeline', 'timing'" in str(e)
    else:
        raise AssertionError("an unknown view must be refused")


def test_every_figure_update_is_json_without_nan(tiny_model):
    from plotly.serializers import _py_to_js

    wb = Workbench(tiny_model, dict(widgets.TEACHING_DEFAULTS, num_kvcache_blocks=40))
    pressure(wb, 4, max_tokens=40)  # 4 x 11 blocks > 40: preemptions, and empty timeline cells
    while wb.llm.has_unfinished():
        wb.step(10)
    wb.close()
    assert wb.recorder.steps.preempted.sum() > 0
    for view in wb.dashboard.views:
        for trace in view.figure.data if view.figure is not None else ():
            for value in trace.to_plotly_json().values():
                packed = _py_to_js(value, None)
                if isinstance(packed, dict) and "buffer" in packed:
                    continue  # 1-D numbers travel as binary buffers, where NaN is fine
                json.dumps(packed, allow_nan=False)  # raises ValueError on NaN / inf
