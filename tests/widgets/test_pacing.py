"""The one redraw gate (widgets/pacing.py): one frame in flight at most, the newest state
replacing a pending one; the rate limit; frames that still go out while a cell holds the kernel;
clicks that reach the kernel before the next step."""

from __future__ import annotations

import asyncio
import math

import pytest
from widget_helpers import FakePage, pressure, until

from widgets import TEACHING_DEFAULTS, Workbench, pacing
from widgets.pacing import RedrawGate


def counting_gate(**kw) -> tuple[RedrawGate, list[float]]:
    gate, drawn = RedrawGate(**kw), []
    gate.draw = lambda: drawn.append(gate.page.ping)
    return gate, drawn


def test_without_a_page_the_rate_alone_decides():
    gate, drawn = counting_gate(interval=10.0)
    assert not gate.connected
    gate.request()
    gate.request()  # within the interval: pending (no loop here to arm a timer)
    assert len(drawn) == 1 and gate.pending
    assert 9 < gate.wait() <= 10
    gate.flush()  # before reading what the views drew
    assert len(drawn) == 2 and not gate.pending


def test_the_rate_stretches_with_the_cost_of_a_frame():
    gate = RedrawGate(interval=0.1, max_share=0.05, max_interval=2.0)
    gate.cost = 0.001  # 1 ms of CPU per frame: 10 a second
    assert gate.gap == pytest.approx(0.1)
    gate.cost = 0.02  # 20 ms: at most 5% of the time -> every 0.4 s
    assert gate.gap == pytest.approx(0.4)
    gate.cost = 10.0  # very slow frames still go out every max_interval
    assert gate.gap == 2.0


def test_one_frame_in_flight_and_the_newest_replaces_a_pending_one():
    async def scenario():
        gate, drawn = counting_gate(interval=0.0)
        gate.page.pong = gate.page.ping  # a page said hello
        gate.request()
        assert len(drawn) == 1 and gate.in_flight
        await asyncio.sleep(0)  # the kernel's loop turns: the gate waits for the page, not a timer
        for _ in range(50):  # steps keep coming while the page draws
            gate.request()
        assert len(drawn) == 1 and gate.pending and gate.wait() == math.inf
        gate.page.pong = gate.page.ping  # drawn: the pending (newest) state goes out, once
        await asyncio.sleep(0.01 + 2 * gate.round_trip)
        assert len(drawn) == 2 and not gate.pending and gate.in_flight

    asyncio.run(scenario())


def test_while_a_cell_holds_the_kernel_frames_go_out_blind_and_spaced():
    gate, drawn = counting_gate(interval=0.0)
    gate.page.pong = gate.page.ping
    gate.request()  # no loop turns after it (as in a cell's generate()): the pong cannot arrive
    assert len(drawn) == 1
    gate.round_trip, sent = 0.3, gate.sent_at  # as measured on earlier frames
    assert gate.wait(sent + 0.1) == math.inf  # not yet known to be held
    assert gate.wait(sent + 0.5) == pytest.approx(3 * 0.3 - 0.5)  # held: every 3 round trips
    assert gate.wait(sent + 0.95) < 0


def test_run_stopping_waits_for_the_page_to_draw_the_toggle_first():
    async def scenario():
        gate, drawn = counting_gate(interval=100.0)  # the rate would hold a frame for long
        gate.page.pong = gate.page.ping
        gate.hold()  # the toggle's answer went out
        gate.soon()
        assert drawn == [] and gate.in_flight
        gate.page.pong = gate.page.ping  # the page painted the toggle
        assert len(drawn) == 1  # at once, whatever the rate

    asyncio.run(scenario())


def test_clicks_in_waits_for_the_echo_and_gives_up_on_a_stalled_page(monkeypatch):
    async def scenario():
        gate, _ = counting_gate()
        await gate.clicks_in()  # no page: at once
        gate.page.pong = gate.page.ping
        waiting = asyncio.ensure_future(gate.clicks_in())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        gate.page.tock = gate.page.tick  # the page's echo
        await asyncio.wait_for(waiting, 1.0)
        assert not gate.stalled
        monkeypatch.setattr(pacing, "PAGE_TIMEOUT", 0.05)
        await gate.clicks_in()  # never echoed: Run stops waiting for the page
        assert gate.stalled
        await asyncio.wait_for(gate.clicks_in(), 0.01)  # and does not wait again
        gate.page.tock = gate.page.tick
        assert not gate.stalled  # the page is back

    asyncio.run(scenario())


def test_a_slow_page_never_has_more_than_one_frame_to_draw(tiny_model):
    """The learner's long Run: a page slower than the steps fell 42 s behind (a draw slower than
    the old 1 s timeout counted as lost, and frames piled up). With a page that takes 1.2 s per
    frame, frames wait for it, and every Pause lands within one step."""
    asyncio.run(slow_page_run(tiny_model))


async def slow_page_run(tiny_model):
    bench = Workbench(tiny_model, TEACHING_DEFAULTS, redraw_interval=0.0)
    try:
        bench.gate.max_share = 1.0  # only the page gates frames
        page = FakePage(bench, draw_s=1.2)
        behind, draw = [], bench.gate.draw  # at each frame: was one still being drawn?
        bench.gate.draw = lambda: (behind.append(bench.gate.in_flight), draw())
        pressure(bench, 12, max_tokens=300)
        for _ in range(2):
            started = len(bench.history)
            bench.controls.run_toggle.value = True
            await until(lambda s=started: len(bench.history) >= s + 10)
            at_click = len(bench.history)
            page.clicks.append(lambda: setattr(bench.controls.run_toggle, "value", False))
            await until(lambda: not bench.running)
            assert len(bench.history) - at_click <= 1
        await asyncio.sleep(2.5)
        assert len(behind) >= 2 and not any(behind)  # the views moved, one frame at a time
    finally:
        bench.close()
