"""Driver: what moves the workbench's engine, through its public API only.

::

    step(n)   up to n engine steps now (fewer when nothing is left), then show the latest
    run()     one asyncio task on the running loop (the kernel's):
                  while running: engine.step(); await the page's echo (Backpressure.answered);
                                 one turn of the loop; the Delay
    pause()   the task stops after its current step
    breakpoint   set: the task also stops after the first step that hits it (see _breakpoints.py),
                 and the status line says which event at which step; ``step_until`` does the
                 same synchronously (scripts, or a cell that blocks), at most ``max_steps`` steps
    clear_requests()   abort every unfinished request, hand the abort events to the observers
                       (``flush_events()``: no step is scheduled), collect every output

The engine's observers (the workbench's ``_on_step``) see each step as it happens; the workbench
redraws after ``step``, and the driver calls back (``redraw``, which waits for the page) when the
run loop stops. There is at most one stepping task: ``run()`` right after ``pause()``, before the
task has seen the Pause (it may be waiting for the page), lets that task go on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nanovllm import LLM
from nanovllm.engine.core.events import StepRecord
from nanovllm.errors import EngineClosedError, NanoVLLMError, UnknownRequestError

from ._backpressure import Backpressure
from ._breakpoints import Breakpoint, Hit
from ._dashboard import Dashboard


class Driver:
    def __init__(
        self,
        llm: LLM,
        dashboard: Dashboard,
        backpressure: Backpressure,
        redraw: Callable[[], None],
    ):
        self.llm = llm  # replaced by the workbench when it rebuilds the engine
        self.dashboard, self.backpressure, self._redraw = dashboard, backpressure, redraw
        self._running = False
        self._task: asyncio.Task | None = None
        self.breakpoint: Breakpoint | None = None
        self.hit: Hit | None = None  # where the last run stopped at the breakpoint

    @property
    def running(self) -> bool:
        return self._running

    def check_open(self) -> None:
        if self.llm.closed:
            raise EngineClosedError(
                "the workbench's engine is closed: press Rebuild (or call "
                "wb.rebuild()) for a fresh one"
            )

    def step(self, n: int = 1) -> list[StepRecord]:
        """Up to ``n`` engine steps (fewer when nothing is left to do); the caller redraws."""
        self.check_open()
        records = []
        for _ in range(n):
            if not self.llm.has_unfinished():
                break
            records.append(self.llm.step())
        if not records:
            self.dashboard.set_status("idle: no unfinished requests; add one first")
        return records

    def step_until(self, breakpoint: Breakpoint, max_steps: int) -> Hit | None:
        """Step until a step hits ``breakpoint``; None when the requests ran out or ``max_steps``
        steps passed first. The caller redraws."""
        self.check_open()
        for _ in range(max_steps):
            if not self.llm.has_unfinished():
                self.dashboard.set_status(f"idle: all requests finished before a {breakpoint}")
                return None
            hit = self._stopped(self.llm.step(), breakpoint)
            if hit is not None:
                return hit
        self.dashboard.set_status(f"no {breakpoint} in {max_steps} steps")
        return None

    def _stopped(self, record: StepRecord, breakpoint: Breakpoint | None) -> Hit | None:
        hit = breakpoint.check(record, self.llm) if breakpoint is not None else None
        if hit is not None:
            self.hit = hit
            self.dashboard.set_status(str(hit))
        return hit

    def run(self) -> bool:
        """Step continuously in an asyncio task on the running loop until paused; False when it
        was running already."""
        if self._running:
            return False
        self.check_open()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "run() needs a running asyncio loop (a Jupyter kernel has one); "
                "in a script use step(n)"
            ) from None
        self._running = True
        self.dashboard.show_running(True)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run_loop())
        # else: the last run's task has not yet seen the Pause (it waits for the page); it goes
        # on. A second task would step alongside it, two steps per turn.
        return True

    def pause(self) -> None:
        """Stop after the current step."""
        was, self._running = self._running, False
        self.dashboard.show_running(False)
        if was:
            self.dashboard.set_status("paused")

    async def _run_loop(self) -> None:
        try:
            while self._running:
                if not self.llm.has_unfinished():
                    self.dashboard.set_status("idle: all requests finished")
                    break
                try:
                    record = self.llm.step()
                except NanoVLLMError as e:
                    self.dashboard.set_status(f"stopped: {e}", error=True)
                    break
                if self._stopped(record, self.breakpoint) is not None:
                    break
                # clicks first: the page answers after sending any click, so a Pause is handled
                # before the next step (see _backpressure.py); without a page, one turn of the loop
                await self.backpressure.answered()
                await asyncio.sleep(0)
                delay = self.dashboard.controls.delay.value
                if delay:
                    await asyncio.sleep(delay)
        finally:
            self._running, self._task = False, None
            self.dashboard.show_running(False)
            # acknowledged like a redraw: the views' redraw waits until the page has painted the
            # toggle, so a Pause is answered on screen before the burst of figures that follows
            self.backpressure.sent()
            if self.llm.closed:
                self.dashboard.show_closed(True)
            else:
                self._redraw()

    def clear_requests(self) -> None:
        """Abort every unfinished request and collect every output, leaving no sequence."""
        self.check_open()
        seqs = self.llm.snapshot().sequences
        for s in seqs:
            if s.status != "FINISHED":
                self.llm.abort(s.seq_id)
        self.llm.flush_events()  # the abort events reach the observers (no step is scheduled)
        for s in seqs:
            try:
                self.llm.get_output(s.seq_id)
            except UnknownRequestError:
                pass  # already collected
