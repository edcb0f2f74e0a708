"""Driver: what moves the workbench's engine, through its public API only. It reports through
callbacks and never touches a view or a control.

::

    add_request, abort   through the engine's own (an abort's event is handed over at once)
    step(n)   up to n engine steps now (fewer when nothing is left)
    run()     one asyncio task on the running loop (the kernel's):
                  while running: engine.step(); await clicks_in() (every click made so far has
                                 reached the kernel: pacing.py); one turn of the loop; the delay
    pause()   the task stops after its current step
    breakpoint   set: the task also stops after the first step that hits it (model/breakpoints.py);
                 ``run_until`` sets it and runs, or (no loop, or ``background=False``) steps
                 synchronously, at most ``max_steps`` steps (``step_until``)
    clear_requests()   abort every unfinished request, hand the abort events to the observers
                       (``flush_events()``: no step is scheduled), collect every output

    callbacks: say(text, error, details)   a line for the status bar
               running(on)                 the run state changed (the toggle follows)
               stopped()                   the run loop ended (the views catch up)
               breakpoint(bp)              the breakpoint changed (the "until" menu follows)

The engine's observers (the workbench's) see each step as it happens. There is at most one
stepping task: ``run()`` right after ``pause()``, before the task has seen the Pause (it may be
waiting for the page), lets that task go on.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from nanovllm.errors import EngineClosedError, NanoVLLMError, UnknownRequestError

from .model.breakpoints import Breakpoint, Hit

if TYPE_CHECKING:
    from nanovllm import LLM
    from nanovllm.engine.observe.recorder import StepRecord


async def _no_wait() -> None:
    return None


class Driver:
    def __init__(
        self,
        llm: LLM,
        *,
        say: Callable[..., None] = lambda text, error=False, details="": None,
        running: Callable[[bool], None] = lambda on: None,
        stopped: Callable[[], None] = lambda: None,
        clicks_in: Callable[[], Awaitable[None]] = _no_wait,
        delay: Callable[[], float] = lambda: 0.0,
        breakpoint: Callable[[Breakpoint | None], None] = lambda bp: None,
    ):
        self.llm = llm  # replaced (attach) when the workbench rebuilds the engine
        self._off: list[Callable[[], None]] = []  # unsubscribe the observers attached
        self._say, self._show_running, self._stopped = say, running, stopped
        self._clicks_in, self._delay, self._show_breakpoint = clicks_in, delay, breakpoint
        self._running = False
        self._task: asyncio.Task | None = None
        self._breakpoint: Breakpoint | None = None
        self.hit: Hit | None = None  # where the last run stopped at the breakpoint

    @property
    def breakpoint(self) -> Breakpoint | None:
        return self._breakpoint

    @breakpoint.setter
    def breakpoint(self, bp: Breakpoint | None) -> None:
        self._breakpoint = bp
        self._show_breakpoint(bp)

    @property
    def running(self) -> bool:
        return self._running

    def attach(self, llm: LLM, *observers: Callable) -> None:
        """Drive ``llm`` from now on, and have it report every step to ``observers``."""
        self.detach()
        self.llm, self._off = llm, [llm.subscribe(o) for o in observers]

    def detach(self) -> None:
        """The observers hear no more steps."""
        for off in self._off:
            off()
        self._off = []

    def check_open(self) -> None:
        if self.llm.closed:
            raise EngineClosedError(
                "the workbench's engine is closed: press Rebuild (or call "
                "wb.rebuild()) for a fresh one"
            )

    def add_request(self, prompt, params) -> int:
        self.check_open()
        request_id = self.llm.add_request(prompt, params)
        self._say(f"added request {request_id}")
        return request_id

    def abort(self, request_id: int) -> None:
        """Abort a request; its abort event reaches the observers now, not at the next step."""
        self.check_open()
        self.llm.abort(request_id)
        self.llm.flush_events()
        self._say(f"aborted request {request_id}")

    def step(self, n: int = 1) -> list[StepRecord]:
        """Up to ``n`` engine steps (fewer when nothing is left to do)."""
        self.check_open()
        records = []
        for _ in range(n):
            if not self.llm.has_unfinished():
                break
            records.append(self.llm.step())
        if not records:
            self._say("idle: no unfinished requests; add one first")
        return records

    def run_until(self, bp: Breakpoint, max_steps: int, background: bool | None) -> Hit | None:
        """In the background (the default where a loop runs): set ``bp`` and run (None).
        Otherwise: ``step_until``."""
        if background is None:
            try:
                asyncio.get_running_loop()
                background = True
            except RuntimeError:
                background = False
        if background:
            self.breakpoint = bp
            self.run()
            return None
        return self.step_until(bp, max_steps)

    def step_until(self, breakpoint: Breakpoint, max_steps: int) -> Hit | None:
        """Step until a step hits ``breakpoint``; None when the requests ran out or ``max_steps``
        steps passed first."""
        self.check_open()
        for _ in range(max_steps):
            if not self.llm.has_unfinished():
                self._say(f"idle: all requests finished before a {breakpoint}")
                return None
            hit = self._stopped_at(self.llm.step(), breakpoint)
            if hit is not None:
                return hit
        self._say(f"no {breakpoint} in {max_steps} steps")
        return None

    def _stopped_at(self, record: StepRecord, breakpoint: Breakpoint | None) -> Hit | None:
        hit = breakpoint.check(record, self.llm) if breakpoint is not None else None
        if hit is not None:
            self.hit = hit
            self._say(str(hit))
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
        self._show_running(True)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run_loop())
        # else: the last run's task has not yet seen the Pause (it waits for the page); it goes
        # on. A second task would step alongside it, two steps per turn.
        return True

    def pause(self) -> None:
        """Stop after the current step."""
        was, self._running = self._running, False
        self._show_running(False)
        if was:
            self._say("paused")

    async def _run_loop(self) -> None:
        try:
            while self._running:
                if not self.llm.has_unfinished():
                    self._say("idle: all requests finished")
                    break
                if self._stopped_at(self.llm.step(), self.breakpoint) is not None:
                    break
                # clicks first: a Pause clicked during the step is handled before the next one
                await self._clicks_in()
                await asyncio.sleep(0)
                delay = self._delay()
                if delay:
                    await asyncio.sleep(delay)
        except NanoVLLMError as e:
            self._say(f"stopped: {e}", error=True)
        except Exception as e:  # a bug: shown, with its traceback, not lost in a task
            self._say(f"stopped: {type(e).__name__}: {e}", True, traceback.format_exc())
        finally:
            self._running, self._task = False, None
            self._show_running(False)
            self._stopped()

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
