"""Backpressure between the kernel and the browser: the kernel waits for the page, not the reverse.

A redraw is a burst of widget messages (four figures and a panel). A 2-core machine's browser can
take longer to draw one than the kernel takes to send the next; messages then queue in the page,
and a click waits behind them for seconds. So the kernel pings, and an invisible view in the
dashboard answers once the page has painted::

    kernel                                   browser (DrawAck, one tiny view in the dashboard)
    redraw(); ping = n        ----------->   draws the redraw's messages (they came first),
                                             then, after the next painted frame: pong = n
    redraw again once pong == n  <--------
    and the page has been idle twice as long as that round trip took

While Run is on, every step waits for the answer to a ping sent after it (``answered()``). The page
sends a click's message before its pong, on the same connection, and the kernel handles messages in
order: so a Pause clicked during a step is handled before the next step starts (at most one step
after the click), however fast the steps are.

The same view also reports figures the page left blank (``blank``: the names of the dashboard's
figure boxes whose plot was drawn with no trace; every live figure has one from its start). That
happens when anywidget gave up on a figure's model: it allows a model 2 s to load its module
(plotly's is 4.9 MB, loaded once per figure, so a busy 2-core machine can take longer) and then
drops every message to it. The Wiring has the Workbench renew those figures.

With no view ever drawn (nbval, scripts, tests without a browser) nothing waits. A ping unanswered
for ``timeout`` (the tab was closed; or a cell is busy in ``generate``, so the answer waits in the
kernel's queue) counts as "no page": redraws go out at most once per ``timeout`` and Run stops
waiting, until a page answers again.
"""

from __future__ import annotations

import asyncio
import time

import anywidget
import traitlets

# After a redraw is drawn, the page stays free of the next one for this many times as long as the
# last took to draw and answer: the page is busy drawing at most a third of the time.
IDLE_SHARE = 2.0

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
    answer();  // a new view says it is there
    return () => {
      clearInterval(checking);
      model.off("change:ping", answer);
      model.off("change:tick", echo);
    };
  },
};
"""


class DrawAck(anywidget.AnyWidget):
    """An invisible view. It answers each ``ping`` with a ``pong`` once the page has painted (what
    was sent before is drawn), and each ``tick`` with a ``tock`` at once (what was clicked before
    is on its way to the kernel); ``blank`` lists the dashboard's figures drawn empty."""

    _esm = traitlets.Unicode(_ESM).tag(sync=True)
    ping = traitlets.Int(0).tag(sync=True)
    pong = traitlets.Int(-1).tag(sync=True)  # -1: no view has answered yet
    tick = traitlets.Int(0).tag(sync=True)
    tock = traitlets.Int(0).tag(sync=True)
    blank = traitlets.List(traitlets.Unicode()).tag(sync=True)  # figure names, from the page


class Backpressure:
    """``ready()``: may a redraw go out now? ``sent()``: one just did. ``await answered()``: every
    click made so far has reached the kernel."""

    def __init__(self, timeout: float = 1.0):
        self.timeout = timeout
        self.ack = DrawAck()
        self.round_trip = 0.0  # seconds the page took to draw (and answer) the last redraw
        self.drawn_at = float("-inf")
        self._sent_at = float("-inf")
        self._lost = False  # a ping or tick went unanswered for ``timeout``
        self._waiters: list[asyncio.Future] = []
        self.ack.observe(self._on_pong, "pong")
        self.ack.observe(self._on_tock, "tock")

    @property
    def connected(self) -> bool:
        """Is a page answering?"""
        return self.ack.pong >= 0 and not self._lost

    def _on_pong(self, change) -> None:
        now = time.perf_counter()
        if change["new"] == self.ack.ping and change["old"] >= 0:  # not a new view's hello
            self.round_trip = now - self._sent_at
        self.drawn_at, self._lost = now, False

    def _on_tock(self, change) -> None:
        if change["new"] == self.ack.tick:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters.clear()
        self._lost = False

    def ready(self, now: float | None = None) -> bool:
        now = time.perf_counter() if now is None else now
        if not self.connected:
            return True
        if self.ack.pong != self.ack.ping:  # the last redraw is not drawn yet
            if now - self._sent_at < self.timeout:
                return False
            self._lost = True
            return True
        # drawn: leave the page as much idle time as the last draw took, so clicks get through
        return now - self.drawn_at >= min(IDLE_SHARE * self.round_trip, self.timeout)

    def sent(self, now: float | None = None) -> None:
        """A redraw went out: ping, so its drawing is acknowledged."""
        self._sent_at = time.perf_counter() if now is None else now
        self.ack.ping += 1

    async def answered(self) -> None:
        """Wait until the page has echoed a tick sent now: clicks made before it have reached the
        kernel (and were handled, in order). No wait without a page."""
        if not self.connected:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.ack.tick += 1
        try:
            await asyncio.wait_for(waiter, self.timeout)
        except asyncio.TimeoutError:
            self._lost = True
