"""The token-budget view (widgets/views/token_budget.py): per step, the decode tokens, the prefill
chunk tokens and what is left of ``max_num_batched_tokens``, from the records."""

from __future__ import annotations

import numpy as np
from widget_helpers import LONG

from widgets import TEACHING_DEFAULTS, Workbench


def test_the_bars_are_the_steps_decodes_chunks_and_what_is_left(tiny_model):
    config = dict(TEACHING_DEFAULTS, max_num_batched_tokens=64)  # a long prompt goes in chunks
    wb = Workbench(tiny_model, config, window=1000)
    try:
        a = wb.add_request(f"0: {LONG}", max_tokens=6, ignore_eos=True)
        wb.step(2)
        wb.add_request(f"1: {LONG}", max_tokens=6, ignore_eos=True)
        wb.step(2)
        wb.abort(a)  # an idle record: not a step of the budget
        wb.step(3)
        view = wb.token_budget_view  # found by its name, as every view
        decodes, chunks, left = (np.asarray(t.y).tolist() for t in view.figure.data)
        steps = wb.recorder.steps
        ran = steps[steps.num_tokens > 0]
        assert list(view.figure.data[0].x) == [str(s) for s in ran.step]
        assert decodes == ran.decode_tokens.tolist() and chunks == ran.prefill_tokens.tolist()
        assert left == [64 - d - c for d, c in zip(decodes, chunks)] and min(left) >= 0
        assert any(d and c for d, c in zip(decodes, chunks))  # a mixed step shares the budget
        assert "64 (max_num_batched_tokens)" in view.figure.layout.title.text
        assert wb.freeze("token_budget").step == wb.shown_step
    finally:
        wb.close()
