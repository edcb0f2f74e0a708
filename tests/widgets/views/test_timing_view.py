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
