"""The controls and their wiring (widgets/controls/): driven the way a browser drives them
(``button.click()``, ``toggle.value = True``, ``slider.value = k``); a failure is shown in the
status line, not raised, and stays there until an action succeeds."""

from __future__ import annotations

import pytest
from widget_helpers import PROMPT, grid_values, pressure


def test_add_form_and_reset(wb):
    c = wb.controls
    c.prompt.value, c.max_tokens.value, c.temperature.value, c.copies.value = PROMPT, 5, 0.7, 3
    c.add_button.click()
    assert [s.status for s in wb.llm.snapshot().sequences] == ["WAITING"] * 3
    assert "added requests 0, 1, 2" in c.status.value
    c.prompt.value = ""
    c.copies.value = 1
    c.add_button.click()
    assert "RequestError" in c.status.value  # shown, not raised
    wb.step(2)
    c.reset_button.click()
    assert wb.llm.snapshot().sequences == () and not wb.llm.has_unfinished()
    assert len(wb.history) == 0 and wb.recorder.steps.empty and wb.recorder.events.empty
    assert c.slider.disabled and wb.metrics_panel.html == wb.metrics_panel.empty_html()
    assert list(wb.timeline_view.figure.data[0].x) == [] and wb.llm.get_metrics()["steps"] == 0
    # no step kept: every view draws the cache as it is now, none what was there before the reset
    assert wb.block_view.figure.layout.title.text == "KV cache blocks now"
    assert wb.requests_panel.rows == [] and wb.requests_panel.header.value == "<b>0 requests</b>"
    old = wb.llm
    wb.reset(rebuild=True)
    assert old.closed and not wb.llm.closed and wb.llm is not old
    wb.add_request(PROMPT, max_tokens=2)
    assert len(wb.step(5)) == 2 and wb.history.first_step == 0


def test_slider_scrubs_back_and_every_view_shows_that_step(wb):
    seen = {}
    wb.llm.subscribe(lambda r: seen.__setitem__(r.step, wb.llm.snapshot().block_state.tolist()))
    pressure(wb, 4)
    wb.step(12)
    last = wb.history.last_step
    assert wb.controls.slider.max == last
    wb.controls.slider.value = 2
    assert wb.shown_step == 2 and wb.selection.pinned == 2
    assert grid_values(wb) == seen[2]
    assert wb.timeline_view.figure.data[0].x[-1] == wb.timing_view.figure.data[0].x[-1] == "2"
    assert "<b>Step 2</b> (time travel" in wb.metrics_panel.html
    assert (
        "requests added</td><td style='padding:1px 6px;border-bottom:1px solid #eee;"
        "white-space:nowrap'><b>4<" in wb.metrics_panel.html
    )
    wb.step(1)  # stepping returns to live
    assert wb.shown_step == last + 1 and wb.controls.slider.value == last + 1
    wb.show_step(5)
    assert wb.controls.slider.value == 5 and grid_values(wb) == seen[5]
    wb.controls.live_button.click()
    assert wb.shown_step == wb.history.last_step and grid_values(wb) == seen[last + 1]
    with pytest.raises(ValueError, match="kept history"):
        wb.show_step(last + 100)


def test_run_outside_a_loop_says_what_to_do(wb):
    with pytest.raises(RuntimeError, match="step"):
        wb.run()
    wb.controls.run_toggle.value = True  # the toggle reports it and springs back
    assert not wb.running and wb.controls.run_toggle.value is False
    assert "RuntimeError" in wb.controls.status.value


def test_a_closed_workbench_says_so_and_rebuilds_from_the_reset_button(wb):
    c = wb.controls
    wb.close()
    assert "closed" in c.status.value and c.reset_button.description == "Rebuild"
    assert c.step_button.disabled and c.add_button.disabled
    c.add_button.click()  # (a disabled button is clickable from code, not in the browser)
    assert "EngineClosedError" in c.status.value
    c.step_button.click()  # a second failing action keeps an error showing, not "idle"
    assert "EngineClosedError" in c.status.value and "Rebuild" in c.status.value
    c.reset_button.click()
    assert not wb.closed and c.reset_button.description == "Reset" and not c.step_button.disabled
    assert "new engine" in c.status.value
    wb.add_request(PROMPT, max_tokens=2)
    assert wb.step() and len(wb.history) == 1


def test_an_error_stays_until_an_action_succeeds(wb):
    c = wb.controls
    c.slider.disabled = False
    wb.wiring.guard(lambda: wb.show_step(99))  # no such step
    assert "ValueError" in c.status.value
    c.live_button.click()  # does not set a status of its own, but it worked: the error goes
    assert "ValueError" not in c.status.value
