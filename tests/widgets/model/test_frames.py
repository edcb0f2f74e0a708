"""The step observer's snapshot policy (widgets/model/frames.py): a snapshot for every step while
it is cheap, only at redraws when it is not."""

from __future__ import annotations

import numpy as np
from widget_helpers import pressure

from widgets import TEACHING_DEFAULTS, Workbench


def test_costly_snapshots_are_kept_only_at_redraws(tiny_model):
    bench = Workbench(
        tiny_model, dict(TEACHING_DEFAULTS, num_kvcache_blocks=5000), redraw_interval=1e9
    )
    try:
        pressure(bench, 2)
        bench.stage.frames.snap_cost = 1.0  # as if a snapshot cost far more than 1% of a step
        bench.step(5)  # the gate allows only the first frame, and the one step() ends with
        kept = [f.step for f in bench.history.frames if f.snapshot is not None]
        assert kept == [0, 4]
        # no per-block text at this size: a hover line per cell of 8 blocks (see model/cells.py)
        hover = np.asarray(bench.block_view.figure.data[0].hovertext, dtype=object).ravel()
        assert bench.block_view.per_cell == 8 and sum(bool(h) for h in hover) == 625
        bench.show_step(2)
        assert "nearest snapshot: after step 0" in bench.block_view.figure.layout.title.text
        assert "totals as of step 0" in bench.metrics_panel.html
        bench.stage.frames.every_step = True
        bench.step(1)
        assert bench.history.at(5).snapshot is not None
    finally:
        bench.close()


def test_cheap_snapshots_are_kept_for_every_step(tiny_model):
    bench = Workbench(tiny_model, TEACHING_DEFAULTS)
    try:
        bench.stage.frames.step_cost = 1.0  # as if each step took a second: a snapshot is cheap
        pressure(bench, 1)
        bench.step(4)
        assert all(f.snapshot is not None for f in bench.history.frames)
    finally:
        bench.close()
