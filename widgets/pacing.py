"""Pacing: the one place that decides when the views redraw, so that the page never falls behind.

A redraw (a *frame*) is a burst of widget messages. A 2-core machine's browser can take longer to
draw one than the kernel takes to send the next; if frames queue in the page, a click waits behind
them for seconds. So the gate knows what the page has drawn (an invisible view, ``PageEcho``,
answers each ``ping`` once the page has painted what came before it), what is pending, and whether
Run is on, and decides::

    request()  steps arrived: draw the newest state as soon as allowed      (observer, timer)
    force()    draw now: an explicit action (a Step click, show_step, pick) (the workbench)
    soon()     draw once the page has drawn what was sent, rate limit waived (Run stopped)
    hold()     treat what was just sent (the toggle after Pause) as a frame: the next waits for it

    a frame may go out when       no page answers yet (nbval, scripts): the rate limit alone
                                  else: the last frame is drawn (pong == ping) and the page has
                                  been idle IDLE_SHARE x as long as that frame took
                                  (never a second frame in flight: a pending one is replaced by
                                  the newest state, so the page's backlog cannot grow)
    and the rate limit            every ``interval`` s at most, and drawing at most ``max_share``
                                  of the kernel's CPU (a slow draw stretches the gap, up to
                                  ``max_interval``): the engine keeps its throughput

One exception: while a cell holds the kernel (``llm.generate`` in a cell), the page's answers
wait in the kernel's queue, so the gate cannot hear them. It notices (the kernel's loop has not
turned since the frame went out) and sends a frame every BLIND_SPACING x the last round trip
instead, so the page stays mostly idle and the views still move.

Run and clicks: while Run is on, the driver awaits ``clicks_in()`` after every step. The page
echoes a ``tick`` after any click made before it (same connection, in order), and the kernel
handles messages in order: a Pause clicked during a step is handled before the next step. If the
page does not echo for PAGE_TIMEOUT (its tab closed or stalled), Run stops waiting for it, and
frames still go out one at a time; the page's next answer brings everything back.

``PageEcho.blank`` also reports figures the page drew with no trace (see views/figures.py for why
that should not happen any more); the workbench renews them and says so.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

import anywidget
import traitlets

IDLE_SHARE = 2.0  # after a frame is drawn, the page stays free this many times as long
BLOCKED_AFTER = 0.25  # s without a turn of the kernel's loop since a frame: a cell holds it
BLIND_SPACING = 3.0  # frames while the kernel is held: this many round trips apart
MIN_BLIND_GAP = 0.5  # s, and at least this
PAGE_TIMEOUT = 5.0  # s without a click echo: Run stops waiting for the page

_ESM = """
export default {
  render({ model, el }) {
    el.style.display = "none";
    const answer = () => requestAnimationFrame(() => setTimeout(() => {
      model.set("pong", model.get("ping"));
      model.save_changes();
    }, 0));
    const echo = () => { model.set("tock", model.get("tick")); model.save_changes(); };
    // the dashboard's figures drawn with no trace (their model lost its messages): report them
    let reported = "[]";
    const check = () => {
      const root = el.closest(".nanovllm-dashboard");
      const blank = root ? [...root.querySelectorAll(".nanovllm-figure")].filter((box) => {
        const plot = box.querySelector(".js-plotly-plot");
        return plot && plot._fullLayout && Array.isArray(plot.data) && plot.data.length === 0;
      }).map((box) => [...box.classList].find((c) => c.startsWith("nanovllm-figure-")).slice(16))
        : [];
      if (JSON.stringify(blank) !== reported) {
        reported = JSON.stringify(blank);
        model.set("blank", blank);
        model.save_changes();
      }
    };
    const checking = setInterval(check, 1000);
    model.on("change:ping", answer);
    model.on("change:tick", echo);
    answer();  // a new view says it is there (and releases a run waiting for an echo)
    echo();
    return () => {
      clearInterval(checking);
      model.off("change:ping", answer);
      model.off("change:tick", echo);
    };
  },
};
"""


class PageEcho(anywidget.AnyWidget):
    """An invisible view. It answers each ``ping`` with a ``pong`` once the page has painted
    (what was sent before is drawn), and each ``tick`` with a ``tock`` at once (what was clicked
    before is on its way to the kernel); ``blank`` lists the dashboard's figures drawn empty."""

    _esm = traitlets.Unicode(_ESM).tag(sync=True)
    ping = traitlets.Int(0).tag(sync=True)
    pong = traitlets.Int(-1).tag(sync=True)  # -1: no view has answered yet
    tick = traitlets.Int(0).tag(sync=True)
    tock = traitlets.Int(0).tag(sync=True)
    blank = traitlets.List(traitlets.Unicode()).tag(sync=True)  # figure names, from the page


class RedrawGate:
    """See the module docstring. ``draw`` is the workbench's redraw."""

    def __init__(self, interval: float = 0.1, max_share: float = 0.02, max_interval: float = 2.0):
        self.interval, self.max_share, self.max_interval = interval, max_share, max_interval
        self.page = PageEcho()
        self.draw: Callable[[], None] = lambda: None
        self.cost = 0.0  # CPU seconds a frame takes in the kernel (moving average)
        self.round_trip = 0.0  # seconds from the last drawn frame's ping to its pong
        self.last_frame = self.sent_at = self.drawn_at = -math.inf
        self.pending = False  # steps arrived since the last frame
        self._soon = False  # the pending frame waits for the page only (``soon``)
        self.frames = 0
        self.stalled = False  # the page left a click echo unanswered for PAGE_TIMEOUT
        self._timer: asyncio.TimerHandle | None = None
        self._loop_turned = True  # the kernel's loop has run since the last frame went out
        self._waiter: asyncio.Future | None = None
        self.page.observe(self._on_pong, "pong")
        self.page.observe(self._on_tock, "tock")

    @property
    def connected(self) -> bool:
        """Has a page answered?"""
        return self.page.pong >= 0

    @property
    def in_flight(self) -> bool:
        """A frame the page has not drawn yet."""
        return self.connected and self.page.pong != self.page.ping

    @property
    def gap(self) -> float:
        cap = max(self.interval, self.max_interval)
        return min(max(self.interval, self.cost / self.max_share), cap)

    # ---- deciding -------------------------------------------------------------------------------
    def request(self) -> None:
        """New state to show: a frame now if allowed, else as soon as it is (the newest)."""
        self.pending = True
        self._decide()

    def force(self) -> None:
        """A frame now, whatever the page and the rate: an explicit action asked for it."""
        self._frame()

    def soon(self) -> None:
        """A frame as soon as the page has drawn what was sent, whatever the rate."""
        self.pending = self._soon = True
        self._decide()

    def flush(self) -> None:
        """A frame now if state is pending (before reading what the views drew)."""
        if self.pending:
            self._frame()

    def hold(self) -> None:
        """What was just sent counts as a frame: the next one waits until the page drew it."""
        self._sent(time.perf_counter())

    def wait(self, now: float | None = None) -> float:
        """Seconds until a frame may go out (inf: when the page answers)."""
        now = time.perf_counter() if now is None else now
        rate = -math.inf if self._soon else self.last_frame + self.gap - now
        if not self.connected:
            return rate
        if self.in_flight:
            if self._held(now):
                blind = max(BLIND_SPACING * self.round_trip, MIN_BLIND_GAP)
                return max(rate, self.sent_at + blind - now)
            return math.inf
        idle = 0.0 if self._soon else min(IDLE_SHARE * self.round_trip, self.max_interval)
        return max(rate, self.drawn_at + idle - now)

    def _decide(self) -> None:
        if not self.pending:
            return
        wait = self.wait()
        if wait <= 0:
            self._frame()
        elif wait < math.inf:
            self._arm(wait)

    def _held(self, now: float) -> bool:
        """A cell holds the kernel: its loop has not turned since the frame went out."""
        return not self._loop_turned and now - self.sent_at > BLOCKED_AFTER

    # ---- a frame --------------------------------------------------------------------------------
    def _frame(self) -> None:
        started = time.thread_time()  # CPU, not wall time: a draw the OS paused must not count
        self.pending = self._soon = False
        self._cancel_timer()
        self.draw()
        self.frames += 1
        cost = time.thread_time() - started
        self.cost = cost if self.cost == 0.0 else self.cost + 0.3 * (cost - self.cost)
        self.last_frame = now = time.perf_counter()
        self._sent(now)

    def _sent(self, now: float) -> None:
        self.sent_at, self._loop_turned = now, False
        try:
            asyncio.get_running_loop().call_soon(self._turned)
        except RuntimeError:
            pass  # no loop (a script): nothing could answer anyway
        if self.connected:
            self.page.ping += 1

    def _turned(self) -> None:
        self._loop_turned = True

    def _arm(self, wait: float) -> None:
        self._cancel_timer()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a script): the next step, or flush(), draws
        self._timer = loop.call_later(wait, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._decide()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self._cancel_timer()
        self.pending = False

    # ---- the page's answers ---------------------------------------------------------------------
    def _on_pong(self, change) -> None:
        now = time.perf_counter()
        if change["new"] == self.page.ping and change["old"] >= 0:  # not a new view's hello
            self.round_trip = now - self.sent_at
        self.drawn_at, self.stalled = now, False
        self._decide()

    def _on_tock(self, change) -> None:
        self.stalled = False
        if change["new"] == self.page.tick and self._waiter is not None:
            if not self._waiter.done():
                self._waiter.set_result(None)
            self._waiter = None

    async def clicks_in(self) -> None:
        """Wait until every click made on the page so far has reached the kernel (and was
        handled, in order). No page, or a stalled one: at once."""
        if not self.connected or self.stalled:
            return
        loop = asyncio.get_running_loop()
        if self._waiter is None or self._waiter.get_loop() is not loop:
            self._waiter = loop.create_future()  # else the tick out there answers for now too
            self.page.tick += 1
        try:
            await asyncio.wait_for(asyncio.shield(self._waiter), PAGE_TIMEOUT)
        except asyncio.TimeoutError:
            self.stalled = True
