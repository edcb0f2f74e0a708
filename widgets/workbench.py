"""Workbench: the public facade; it builds the pieces (each in its own module) and connects them::

    Driver (driver.py): step(n), the Run task, breakpoints --engine.step()--> engine
        --StepRecord--> Stage.on_step (stage.py): FrameTaker -> History -> RedrawGate (pacing.py)
        --a frame when the page is ready--> Dashboard.draw(DrawContext) -> every view (views/)
    clicks -> Wiring (controls/wiring.py) -> the public methods below (and nothing else)

What is shown is the Stage's: its parts (``wb.history``, ``wb.recorder``, ``wb.selection``,
``wb.gate``, ``wb.controls``, ...) and methods (``wb.live()``, ``wb.show_step(i)``,
``wb.pick(seq)``, ``wb.pick_block(b)``, ``wb.freeze(view)``, ``wb.flush()``, ``wb.redraw()``) are
handed on by ``__getattr__``; the views are found by their names (``wb.block_view``, views/).
"""

from __future__ import annotations

from typing import Any

from nanovllm import LLM, SamplingParams
from nanovllm.replay import WorkloadRecorder

from .controls.replay_form import ReplayPanel
from .controls.wiring import Wiring
from .driver import Driver
from .model.breakpoints import Breakpoint, Hit
from .model.texts import SequenceText
from .options import Options
from .replay import Comparison, compare
from .stage import Stage
from .views import ViewSetup

# handed on to the Stage: its parts, and its public methods (wb.live() is stage.live())
_STAGE = {"history", "recorder", "selection", "gate", "controls", "status", "dashboard"}
_STAGE |= {"frozen", "renewed", "observer_time", "shown_step", "redraw", "flush", "live"}
_STAGE |= {"show_step", "pick", "pick_block", "freeze", "renew_figures"}


class Workbench:
    def __init__(self, model: str, config: dict[str, Any] | None = None, **options: Any):
        """``model`` and the engine ``config`` build an ``LLM``; ``options`` are options.py's."""
        opts = Options(**options)  # checked before an engine is built
        self.model, self.config, self._replay_panel = str(model), dict(config or {}), None
        llm = LLM(self.model, **self.config)
        self.texts = SequenceText(lambda: self.llm)  # token text for the views' hovers and rows
        setup = ViewSetup.of_engine(llm.config, opts.window)
        self.stage = Stage(opts, setup, self.texts)
        self.driver = Driver(llm, **self.stage.driver_callbacks())
        self.stage.running = lambda: self.driver.running
        self._attach(llm)
        self.wiring = Wiring(self)  # the controls call the public API below
        self.dashboard.on_click(self.wiring.on_click)
        self.gate.force()
        self.gate.last_frame = float("-inf")  # the first step draws at once

    def __getattr__(self, name: str):
        """The Stage's parts (see the module docstring), and the views by their attribute
        names (``wb.block_view``, ``wb.timing_view``, ...)."""
        stage = self.__dict__.get("stage")
        if stage is not None and name in _STAGE:
            return getattr(stage, name)
        view = stage.dashboard.by_attribute(name) if stage is not None else None
        if view is None:
            why = stage.dashboard.why_absent(name) if stage is not None else None
            raise AttributeError(
                f"{name}: {why}" if why else f"{type(self).__name__!r} has no attribute {name!r}"
            )
        return view

    def __dir__(self):
        views = [v.attribute for v in self.dashboard.views]
        return sorted({*super().__dir__(), *_STAGE, *views})

    widget = property(lambda self: self.dashboard.widget)
    throttle = property(lambda self: self.gate, doc="The redraw gate, by its old name.")
    redraws = property(lambda self: self.gate.frames)
    running = property(lambda self: self.driver.running)
    llm = property(lambda self: self.driver.llm)
    closed = property(lambda self: self.llm.closed)

    # ---- engine ---------------------------------------------------------------------------------
    def _attach(self, llm: LLM) -> None:
        self.stage.frames.llm = llm
        self.workload = WorkloadRecorder(llm)  # the requests as they arrive, for replay()
        self.driver.attach(llm, self.stage.on_step, self.workload)

    def close(self) -> None:
        """Stop running, stop observing, and close the engine (workers, memory, shared memory)."""
        self.pause()
        self.driver.detach()
        self.llm.close()
        self.stage.close()
        self.status.say("closed: press Rebuild (or wb.rebuild()) for a fresh engine")

    def rebuild(self) -> None:
        """A fresh engine with the same model and config; also brings a closed one back."""
        self.reset(rebuild=True)

    def reset(self, rebuild: bool = False) -> None:
        """Abort every request and clear the history; ``rebuild=True`` also builds a fresh engine
        (with an empty prefix cache)."""
        self.pause()
        if rebuild:
            self.close()
            self._attach(LLM(self.model, **self.config))
            self.texts.clear()  # the new engine numbers its sequences from 0 again
            self.controls.show_closed(False)
        else:
            self.driver.clear_requests()
        self.stage.clear()
        self.workload.clear()
        self.llm.reset_metrics()
        self.live()
        self.status.say("reset" + (" (new engine)" if rebuild else ""))

    @property
    def integrity_overlay(self) -> bool:
        """Check the cache's invariants (``LLM.check_integrity()``) at every step and mark the
        blocks a violation names on the grid."""
        return self.selection.integrity

    @integrity_overlay.setter
    def integrity_overlay(self, on: bool) -> None:
        self.stage.set_integrity(bool(on))

    # ---- driving (driver.py) ------------------------------------------------------------------
    def step(self, n: int = 1) -> list:
        """Run up to ``n`` engine steps (fewer when nothing is left to do), then show the latest."""
        self.driver.check_open()
        try:
            return self.driver.step(n)
        finally:
            self.live()

    def add_request(
        self, prompt: str | list[int], max_tokens: int = 32, temperature: float = 0.0, **sampling
    ) -> int:
        """Queue a request (more ``SamplingParams`` fields by keyword); returns its id."""
        params = SamplingParams(temperature=temperature, max_tokens=max_tokens, **sampling)
        return self.driver.add_request(prompt, params)

    def abort(self, request_id: int) -> None:
        """Abort a request (the requests panel's Abort button); the views show it at once."""
        self.driver.abort(request_id)
        self.live()

    def run(self) -> None:
        """Step continuously in an asyncio task on the running loop (the kernel's) until paused."""
        if self.driver.run():
            self.selection.pinned = None

    def pause(self) -> None:
        """Stop after the current step."""
        self.driver.pause()

    @property
    def breakpoint(self) -> Breakpoint | None:
        """Run stops after the first step that hits it (the "until" controls show it)."""
        return self.driver.breakpoint

    @breakpoint.setter
    def breakpoint(self, bp: Breakpoint | None) -> None:
        self.driver.breakpoint = bp

    def run_until(
        self, event: str, request_id: int | None = None, *, max_steps: int = 10_000, background=None
    ) -> Hit | None:
        """Run until the first step with ``event`` (``model.breakpoints.EVENTS``): in a kernel, in
        the background (Run stops there; ``wb.driver.hit`` says where); in a script or with
        ``background=False``, here: at most ``max_steps`` steps, returning the ``Hit`` or None."""
        self.driver.check_open()
        try:
            return self.driver.run_until(Breakpoint(event, request_id), max_steps, background)
        finally:
            if not self.running:
                self.live()

    # ---- what-if replay (replay.py) -----------------------------------------------------------
    def replay(self, **changes: Any) -> Comparison:
        """Replay the recorded workload (same requests, same arrival steps) on a second engine with
        ``changes`` to this one's config (e.g. ``num_kvcache_blocks=32``), closed when done; the
        ``Comparison`` shows both runs side by side (display it; ``.styled()`` the table to
        show, ``.table()`` its values to read, ``.figure()``)."""
        self.driver.check_open()
        return compare(self, **changes)

    @property
    def replay_panel(self) -> ReplayPanel:
        """The replay form with its table and figure (display it in a cell)."""
        if self._replay_panel is None:
            self._replay_panel = ReplayPanel(self.llm.config, self.replay)
        return self._replay_panel

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "running" if self.running else "idle"
        kept = f"{len(self.history)} steps kept, showing step {self.shown_step}"
        return f"Workbench({self.model!r}, {self.config}, {state}, {kept})"
