"""The step-timing view (widgets/views/timing.py): bars are the records' parts as shares of each
step, the milliseconds on hover; the token rows are the recorded token counts."""

from __future__ import annotations

import numpy as np
from widget_helpers import PROMPT


def test_timing_bars_are_the_recorded_parts_and_tokens(wb):
    for i in range(3):
        wb.add_request(f"{i} {PROMPT}", max_tokens=8)
    wb.step(4)
    timing = wb.timing_view.figure.data
    steps = wb.recorder.steps
    assert list(timing[0].x) == ["0", "1", "2", "3"]  # category labels: no gap for a left-out step
    assert list(timing[5].y) == steps.prefill_tokens.tolist()  # prefill tokens per step
    assert list(timing[6].y) == steps.decode_tokens.tolist()
    fwd_ms = np.array(timing[2].customdata)  # ms on hover; the bars are shares of the step
    assert np.allclose(sum(np.array(t.y) for t in timing[:5]), 100)
    assert np.allclose(fwd_ms, steps.t_forward.to_numpy() * 1e3)
    assert wb.timing_view.figure.layout.title.text.startswith("Step timing, last 4 steps")


def test_after_a_reset_the_timing_axes_go_with_the_steps(wb):
    """An empty chart kept the last window's step ticks (a learner saw steps 280..360 after a
    reset): with no steps the axes are hidden and the title says so."""
    wb.add_request(PROMPT, max_tokens=4)
    wb.step(3)
    fig = wb.timing_view.figure
    assert fig.layout.xaxis.visible and fig.layout.yaxis2.visible
    wb.reset()
    axes = [fig.layout.xaxis, fig.layout.xaxis2, fig.layout.yaxis, fig.layout.yaxis2]
    assert [ax.visible for ax in axes] == [False] * 4
    assert fig.layout.title.text == "Step timing: no steps yet"
    assert wb.token_budget_view.figure.layout.xaxis.visible is False
