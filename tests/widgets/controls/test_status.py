"""The status line (widgets/controls/status.py): a message lasts while it is true. It went stale:
"added request 3" or "paused" long after, while the engine had moved on."""

from __future__ import annotations

import asyncio

from widget_helpers import PROMPT, pressure, until

from widgets.controls.status import StatusLine


def test_a_message_goes_once_the_engine_moves_on_and_an_error_stays():
    s = StatusLine()
    step = [4]
    s.newest_step = lambda: step[0]
    s.state(4, running=False)
    s.say("added request 3")
    assert "added request 3" in s.widget.value and "step 4" in s.widget.value
    s.state(4, running=False)  # a redraw of the same step: still true
    assert "added request 3" in s.widget.value
    step[0] = 5
    s.state(5, running=True)
    assert "added request" not in s.widget.value and "running: step 5" in s.widget.value
    s.say("RequestError: the prompt is empty", error=True, details="Traceback ...")
    s.state(9, running=True)
    assert "RequestError" in s.widget.value and "(at step 5)" in s.widget.value
    assert "<details" in s.widget.value and "Traceback" in s.widget.value


def test_the_status_line_follows_run_and_pause(wb):
    pressure(wb, 2, max_tokens=200)
    wb.add_request(PROMPT, max_tokens=2)
    assert "added request 2" in wb.controls.status.value

    async def scenario():
        wb.controls.delay.value = 0.005
        wb.run()
        await until(lambda: len(wb.history) > 3)
        wb.flush()
        assert "running: step" in wb.controls.status.value
        assert "added request" not in wb.controls.status.value  # that moment has passed
        wb.pause()
        await until(lambda: wb.driver._task is None)

    asyncio.run(scenario())
    value = wb.controls.status.value
    assert "paused" in value and "running" not in value
    assert f"step {wb.history.last_step}" in value
