"""The Driver (widgets/driver.py): Run steps in a task on the kernel's loop, a click is handled
before the next step, and Pause stops it after at most one more step."""

from __future__ import annotations

import asyncio

from widget_helpers import FakePage, grid_values, pressure, until

from widgets import TEACHING_DEFAULTS, Workbench


def test_run_toggle_steps_until_paused_and_clicks_are_handled_while_running(wb):
    pressure(wb, 4)

    async def scenario():
        wb.controls.delay.value = 0.002
        wb.controls.run_toggle.value = True
        assert wb.running and wb.controls.run_toggle.description == "Pause"
        assert wb.controls.step_button.disabled
        await until(lambda: len(wb.history) > 3)  # the task steps while the loop is free
        wb.controls.run_toggle.value = False  # a click while the task runs
        await asyncio.sleep(0.05)
        assert not wb.running and wb.controls.run_toggle.description == "Run"
        paused_at = len(wb.history)
        await asyncio.sleep(0.1)
        assert len(wb.history) == paused_at, "no step after Pause"
        wb.controls.delay.value = 0.0
        wb.run()
        await until(lambda: not wb.running)  # runs on its own until every request finished
        await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert not wb.llm.has_unfinished()
    assert wb.controls.run_toggle.value is False and "idle" in wb.controls.status.value
    assert wb.metrics_panel.html.startswith(f"<div><b>Step {wb.history.last_step}</b>")
    assert grid_values(wb) == wb.llm.snapshot().block_state.tolist()


def test_run_pauses_after_at_most_one_step_behind_a_click(tiny_model):
    asyncio.run(run_pauses_after_at_most_one_step(tiny_model))


async def run_pauses_after_at_most_one_step(tiny_model):
    bench = Workbench(tiny_model, TEACHING_DEFAULTS, redraw_interval=0.0)
    try:
        bench.gate.max_share = 1.0  # only the page gates frames
        page = FakePage(bench)
        assert bench.gate.connected
        pressure(bench, 12, max_tokens=300)
        drawn_while_running = 0
        for _ in range(5):
            started, frames = len(bench.history), bench.redraws
            bench.controls.run_toggle.value = True
            await until(lambda s=started: len(bench.history) >= s + 20)
            steps_at_click = len(bench.history)
            drawn_while_running += bench.redraws - frames
            page.clicks.append(lambda: setattr(bench.controls.run_toggle, "value", False))
            await until(lambda: not bench.running)
            assert len(bench.history) - steps_at_click <= 1, bench.controls.status.value
        # the page answered, so the views moved while running (how often: the machine's speed)
        assert drawn_while_running >= 1
    finally:
        bench.close()


def test_run_right_after_pause_keeps_one_stepping_task(tiny_model):
    asyncio.run(run_right_after_pause(tiny_model))


async def run_right_after_pause(tiny_model):
    bench = Workbench(tiny_model, TEACHING_DEFAULTS)
    try:
        FakePage(bench)  # with a page, the run loop waits for its echo between steps
        pressure(bench, 4, max_tokens=100)
        bench.run()
        await until(lambda: len(bench.history) >= 3)
        bench.pause()
        bench.run()  # before the loop has seen the Pause: it must carry on, not get a twin
        await asyncio.sleep(0.05)
        loops = [t for t in asyncio.all_tasks() if t.get_coro().__name__ == "_run_loop"]
        assert len(loops) == 1 and bench.running
        bench.pause()
        await until(lambda: all(t.done() for t in loops))
    finally:
        bench.close()


def test_a_bug_in_a_step_stops_the_run_and_says_so(wb, monkeypatch):
    pressure(wb, 1)

    def broken():
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(wb.llm, "step", broken)

    async def scenario():
        wb.run()
        await until(lambda: not wb.running)

    asyncio.run(scenario())
    status = wb.controls.status.value
    assert "stopped: ZeroDivisionError: a bug" in status and "Traceback" in status
