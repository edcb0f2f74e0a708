"""The speculation view (widgets/views/speculation.py): each drafted request's draft with its
accepted tokens and first rejection, the acceptance rate per step; and the block grid's marks for
the slots a step rolled back (widgets/views/blocks.py, trace 3)."""

from __future__ import annotations

import pytest

from widgets import TEACHING_DEFAULTS, Workbench
from widgets.views.speculation import draft_row

SPEC = {"method": "ngram", "num_speculative_tokens": 3}


def test_drafts_acceptance_and_rolled_back_slots_are_drawn(teaching_model):
    config = dict(TEACHING_DEFAULTS, speculative_config=SPEC)
    wb = Workbench(teaching_model, config, window=1000)
    try:
        # the week repeats (drafts accepted); "a b c" makes the lookup guess wrong at times
        wb.add_request(
            "Monday Tuesday Wednesday Thursday Friday Saturday Sunday Monday", max_tokens=24
        )
        wb.add_request("a b c a b d a b", max_tokens=24)
        wb.step(12)
        view = wb.speculation_view
        records = [r for r in wb.recorder.records if r.num_draft_tokens]
        assert records
        rates = [r.num_accepted_tokens / r.num_draft_tokens for r in records]
        assert list(view.figure.data[0].x) == [str(r.step) for r in records]
        assert list(view.figure.data[0].y) == rates
        assert "draft tokens accepted over the window" in view.figure.layout.title.text
        assert view.figure.layout.height == 200 and view.figure.layout.xaxis.visible
        shown = wb.recorder.records[-1]
        assert f"step {shown.step}" in view.text.value
        rolled = [r for r in records if any(r.rolled_back_slots)]
        assert rolled, "no step rolled a slot back"
        # the block grid marks the blocks holding a step's rolled-back slots, with a hover line
        blocks, r = wb.block_view, rolled[-1]
        blocks._draw_rolled_back(r)
        marked = sorted({s // 16 for slots in r.rolled_back_slots for s in slots})
        trace = blocks.figure.data[3]
        assert [(x, y) for x, y in zip(trace.x, trace.y)] == [blocks.position(b) for b in marked]
        assert all("rolled back (rejected draft tokens" in t for t in trace.text)
    finally:
        wb.close()


def test_a_draft_row_marks_accepted_first_rejection_and_unchecked():
    html = draft_row(3, (10, 11, 12), 1, (10, 40), "Tuesday Friday")
    assert "accepted 1 of 3" in html and "appended [10, 40]" in html
    assert "#15803d'>10<" in html  # accepted: green
    assert "line-through'>11<" in html  # the first rejection: struck out
    assert "#9ca3af'>12<" in html  # never checked: grey
    assert "Tuesday Friday" in html


def test_without_a_speculative_config_the_view_is_left_out_and_says_why(wb):
    """An engine that never drafts gets no speculation view (it was an empty acceptance chart on
    every dashboard): the view declares where it applies (``View.left_out``), and the dashboard
    builds only the views that apply. Asking for it says why, and how to turn speculation on."""
    from widgets.views import ViewSetup
    from widgets.views.speculation import SpeculationView

    assert wb.llm.config.speculative_config is None
    names = [v.name for v in wb.dashboard.views]
    assert "speculation" not in names and "timing" in names
    assert all("nanovllm-view-speculation" not in w._dom_classes for w in _all(wb.widget))
    with pytest.raises(AttributeError, match=r"speculation_view.*speculative_config="):
        _ = wb.speculation_view
    with pytest.raises(ValueError, match=r"speculation.*speculative_config="):
        wb.freeze("speculation")
    off, on = ViewSetup(8, 16), ViewSetup(8, 16, speculative=True)
    assert "speculative_config" in SpeculationView.left_out(off)
    assert SpeculationView.left_out(on) is None


def test_with_a_speculative_config_the_view_is_on_the_dashboard(teaching_model):
    config = dict(TEACHING_DEFAULTS, speculative_config=SPEC)
    wb = Workbench(teaching_model, config)
    try:
        view = wb.speculation_view
        assert view in wb.dashboard.views and view.widget in _all(wb.widget)
        # no draft yet: the title line alone, which says so
        assert view.figure.layout.height <= 80 and not view.figure.layout.xaxis.visible
        assert "no draft in the window yet" in view.figure.layout.title.text
    finally:
        wb.close()


def _all(widget):
    """``widget`` and every widget inside it."""
    out = [widget]
    for child in getattr(widget, "children", ()):
        out += _all(child)
    return out
