"""Workbench: one engine, its one per-step History, and the dashboard that shows and drives it.

::

    Driver: step(n) / run() task / pause() / clear_requests()      (_driver.py)
        |  engine.step(), add_request, abort, flush_events, get_output
        v
    engine --StepRecord--> _on_step: Frame(record, snapshot?, metrics?) -> History (the only store:
                              |        each frame also gets its timeline column; see _history.py)
                              | redraw if the Throttle allows (<= 10/s, <= 2% of the time)
                              | and the page has drawn the last redraw (Backpressure),
                              | else arm a timer on the kernel's loop (fires once it is free)
                              v
                           redraw(): every view draws the shown step (the latest, or a past one
                                     while time travelling) from windows of the History

``wb.recorder`` is a read-only view of the History's records (``steps``, ``events``, ...);
``reset()`` aborts every request and clears the History, which empties everything the views draw.
``wb.workload`` writes each request down as it arrives; ``wb.replay(**changes)`` runs it again on a
second engine with other settings (``_replay.py``); ``wb.run_until(event)`` stops at a
breakpoint (``_breakpoints.py``).
The views observe only: ``StepRecord``s, ``EngineSnapshot``s and ``get_metrics()``. The engine is
driven through its public API. Run/Pause is the Driver's asyncio task on the kernel's loop: one
step per iteration, then it waits for the page's echo (``Backpressure.answered``), so a Pause click
is handled before the next step. ``freeze(view)`` gives a static copy of a view for cells that
teach one moment; a closed workbench offers Rebuild.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nanovllm import LLM, SamplingParams
from nanovllm.engine.core.events import StepRecord
from nanovllm.replay import WorkloadRecorder

from ._backpressure import Backpressure
from ._block_table import owner_to_pick
from ._breakpoints import Breakpoint, Hit
from ._dashboard import Dashboard
from ._driver import Driver
from ._frozen import FrozenFigure
from ._history import Frame, History, RecordedSteps, Throttle
from ._replay import Comparison, ReplayPanel, compare
from ._texts import SequenceText
from ._wiring import Wiring

# Snapshots cost O(blocks + sequences). By default a snapshot and the metrics are kept for every
# step while the snapshot costs at most this share of the engine's step time (the teaching case: a
# few requests, a small cache); beyond it (a 64-request batch on a fast step, or 100k blocks) only
# at redraws, and time travel shows the nearest earlier ones. StepRecords, and so the timeline and
# timing, are always kept.
SNAPSHOT_SHARE = 0.01
MAX_RENEWALS = 3  # new figure widgets per view, when the page keeps drawing it blank


class Workbench:
    def __init__(
        self,
        model: str,
        config: dict[str, Any] | None = None,
        *,
        history_steps: int = 10_000,
        history_bytes: int = 256 * 2**20,
        redraw_interval: float = 0.1,
        window: int = 100,
        snapshot_every_step: bool | None = None,
    ):
        self.model, self.config = str(model), dict(config or {})
        self.history = History(history_steps, history_bytes)  # the one per-step store
        self.recorder = RecordedSteps(self.history)  # its records as DataFrames
        self.throttle = Throttle(redraw_interval)
        self.backpressure = Backpressure()
        self.snapshot_every_step = snapshot_every_step  # True / False, or None: while cheap
        self._snap_cost = self._step_cost = 0.0  # moving averages, seconds
        self._dirty = False
        self._pinned: int | None = None  # the step shown while time travelling; None = live
        self._check = False
        self._timer: asyncio.TimerHandle | None = None
        self._unsubscribe = None
        self._replay_panel: ReplayPanel | None = None
        self.frozen: list[FrozenFigure] = []  # every figure freeze() made, in order
        self.redraws = 0  # how many times the views were redrawn (the throttle's effect)
        self.renewed: list[str] = []  # figures renewed because the page drew them blank
        self.observer_time = 0.0  # seconds spent in the step observer, redraws included
        llm = LLM(self.model, **self.config)
        cfg = llm.config
        self.texts = SequenceText(lambda: self.llm)  # token text for the views' hovers and rows
        self.dashboard = Dashboard(
            self.history,
            cfg.num_kvcache_blocks,
            cfg.kvcache_block_size,
            window,
            extra=[self.backpressure.ack],
            texts=self.texts,
        )
        self.controls = self.dashboard.controls
        self.driver = Driver(llm, self.dashboard, self.backpressure, self.redraw_when_ready)
        self._attach(llm)
        self.wiring = Wiring(self)  # the controls call the public API below
        self.redraw()
        self.throttle.last = float("-inf")  # the first step draws at once

    # ---- views (stable names for notebooks) ----------------------------------------------------
    @property
    def widget(self):
        return self.dashboard.widget

    @property
    def block_view(self):
        return self.dashboard.block_view

    @property
    def timeline_view(self):
        return self.dashboard.timeline_view

    @property
    def timing_view(self):
        return self.dashboard.timing_view

    @property
    def metrics_panel(self):
        return self.dashboard.metrics_panel

    @property
    def block_table_view(self):
        return self.dashboard.block_table_view

    @property
    def requests_panel(self):
        return self.dashboard.requests_panel

    @property
    def prefix_tree_view(self):
        return self.dashboard.prefix_tree_view

    # ---- engine ---------------------------------------------------------------------------------
    def _attach(self, llm: LLM) -> None:
        self.llm = self.driver.llm = llm
        self.workload = WorkloadRecorder(llm)  # the requests as they arrive, for replay()
        off = [llm.subscribe(self._on_step), llm.subscribe(self.workload)]
        self._unsubscribe = lambda: [f() for f in off]

    def _detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    @property
    def closed(self) -> bool:
        return self.llm.closed

    def close(self) -> None:
        """Stop running, stop observing, and close the engine (workers, memory, shared memory)."""
        self.pause()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._detach()
        self.llm.close()
        self.dashboard.show_closed(True)
        self.dashboard.set_status("closed: press Rebuild (or wb.rebuild()) for a fresh engine")

    def rebuild(self) -> None:
        """A fresh engine with the same model and config (an empty cache and history); also
        brings a closed workbench back."""
        self.reset(rebuild=True)

    def _check_open(self) -> None:
        self.driver.check_open()

    # ---- observing ------------------------------------------------------------------------------
    def _on_step(self, record: StepRecord) -> None:
        """Engine observer: keep the step; redraw only if the throttle allows."""
        started = time.perf_counter()
        if self._want_snapshot(record):
            frame = Frame(record, self._snapshot(), self.llm.get_metrics())
        else:
            frame = Frame(record, None, None)  # filled in if this step gets drawn
        self.history.append(frame)
        self._dirty = True
        if self.throttle.due() and self.backpressure.ready():
            self.redraw()
        elif self._timer is None:
            self._arm_timer()
        self.observer_time += time.perf_counter() - started

    def _want_snapshot(self, record: StepRecord) -> bool:
        if self._check or self.snapshot_every_step is not None:
            return self._check or self.snapshot_every_step
        self._step_cost = _average(self._step_cost, record.timing.total)
        return self._snap_cost <= SNAPSHOT_SHARE * self._step_cost

    def _snapshot(self):
        started = time.perf_counter()
        snap = self.llm.snapshot(check=self._check)
        self._snap_cost = _average(self._snap_cost, time.perf_counter() - started)
        self.block_view.learn(snap)  # the hash chains, from every snapshot taken
        return snap

    def _arm_timer(self) -> None:
        """Draw the last steps once the kernel is free (e.g. after a cell's ``generate``
        returns)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a script): step() and flush() draw
        self._timer = loop.call_later(self.throttle.interval, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._dirty and not self.closed:
            self.redraw_when_ready()  # the page may still be drawing the last redraw: re-armed

    def redraw_when_ready(self) -> None:
        """Redraw now if the page has drawn what was sent before, else once it has (the timer)."""
        self._dirty = True
        if self.backpressure.ready():
            self.redraw()
        elif self._timer is None:
            self._arm_timer()

    def flush(self) -> None:
        """Redraw now if steps arrived since the last redraw."""
        if self._dirty:
            self.redraw()

    def redraw(self) -> None:
        """Bring every view up to date with the shown step (the latest unless time travelling)."""
        started = time.thread_time()
        self._dirty = False
        h = self.history
        if self._pinned is not None and (h.first_step is None or self._pinned < h.first_step):
            self._pinned = None  # the step scrolled out of the kept history
        self.dashboard.sync_slider(h.first_step, h.last_step, self._pinned)
        step = self.shown_step
        frame = h.at(step) if step is not None else None
        if (
            frame is not None
            and self._pinned is None
            and (frame.snapshot is None or frame.metrics is None)
        ):
            frame = h.fill(
                step, frame.snapshot or self._snapshot(), frame.metrics or self.llm.get_metrics()
            )
        snap = h.snapshot_at(step) if step is not None else self._snapshot()
        totals = h.nearest(step, "metrics") if step is not None else None
        self.dashboard.draw(
            step,
            frame,
            snap,
            totals,
            live=self._pinned is None,
            last_step=h.last_step,
            integrity=self._check,
        )
        self.redraws += 1
        self.throttle.done(time.thread_time() - started)
        self.backpressure.sent()

    # ---- driving (the Driver steps; the workbench shows) ---------------------------------------
    def step(self, n: int = 1) -> list[StepRecord]:
        """Run up to ``n`` engine steps (fewer when nothing is left to do), then show the latest."""
        self._check_open()
        try:
            return self.driver.step(n)
        finally:
            self.live()

    def add_request(
        self,
        prompt: str | list[int],
        max_tokens: int = 32,
        temperature: float = 0.0,
        **sampling: Any,
    ) -> int:
        """Queue a request (more ``SamplingParams`` fields by keyword); returns its id."""
        self._check_open()
        params = SamplingParams(temperature=temperature, max_tokens=max_tokens, **sampling)
        request_id = self.llm.add_request(prompt, params)
        self.dashboard.set_status(f"added request {request_id}")
        return request_id

    def abort(self, request_id: int) -> None:
        """Abort a request (the requests panel's Abort button); the views show it at once."""
        self._check_open()
        self.llm.abort(request_id)
        self.llm.flush_events()  # the abort event reaches the History now, not at the next step
        self.dashboard.set_status(f"aborted request {request_id}")
        self.live()

    def pick(self, seq_id: int | None) -> None:
        """Show this request's block table (and outline its blocks on the grid); None: none."""
        self.block_table_view.picked = seq_id
        self.dashboard.draw_cache_views(self.dashboard.snapshot)

    def pick_block(self, block_id: int) -> None:
        """Pick a request holding ``block_id`` in the shown snapshot (a click on the grid; a
        shared block: the next of its owners at each click)."""
        seq_id = owner_to_pick(self.dashboard.snapshot, block_id, self.block_table_view.picked)
        if seq_id is None:
            self.dashboard.set_status(f"block {block_id} belongs to no request")
        else:
            self.pick(seq_id)

    @property
    def running(self) -> bool:
        return self.driver.running

    def run(self) -> None:
        """Step continuously in an asyncio task on the running loop (the kernel's) until paused."""
        if self.driver.run():
            self._pinned = None

    def pause(self) -> None:
        """Stop after the current step."""
        self.driver.pause()

    # ---- breakpoints (see _breakpoints.py) -----------------------------------------------------
    @property
    def breakpoint(self) -> Breakpoint | None:
        """Run stops after the first step that hits it (the "until" controls show it)."""
        return self.driver.breakpoint

    @breakpoint.setter
    def breakpoint(self, bp: Breakpoint | None) -> None:
        self.driver.breakpoint = bp
        c = self.controls
        self.dashboard.set_value(c.until, "" if bp is None else bp.event)
        rid = "" if bp is None or bp.request_id is None else str(bp.request_id)
        self.dashboard.set_value(c.until_request, rid)

    def run_until(
        self,
        event: str,
        request_id: int | None = None,
        *,
        max_steps: int = 10_000,
        background: bool | None = None,
    ) -> Hit | None:
        """Run until the first step with ``event`` (one of ``_breakpoints.EVENTS``), and show it.

        In the background (the default where an asyncio loop runs, as in a kernel) this sets
        ``wb.breakpoint`` and starts Run, which stops there (returns None; ``wb.driver.hit`` tells
        where). Otherwise (a script, or ``background=False``) it steps here, at most
        ``max_steps`` steps, and returns the ``Hit`` (None: no such step before the requests ran
        out or the steps did)."""
        bp = Breakpoint(event, request_id)
        if background is None:
            background = _loop_running()
        if background:
            self.breakpoint = bp
            self.run()
            return None
        self._check_open()
        try:
            return self.driver.step_until(bp, max_steps)
        finally:
            self.live()

    def reset(self, rebuild: bool = False) -> None:
        """Abort every request and clear the history; ``rebuild=True`` also builds a fresh engine
        (with an empty prefix cache)."""
        self.pause()
        if rebuild:
            self._detach()
            self.llm.close()
            self._attach(LLM(self.model, **self.config))
            self.block_view.prev_block.clear()  # the old cache's hash chains
            self.texts.clear()  # the new engine numbers its sequences from 0 again
            self.block_table_view.picked = None
            self.dashboard.show_closed(False)
        else:
            self.driver.clear_requests()
        self.history.clear()  # the one store: every view now draws nothing
        self.workload.clear()
        self.llm.reset_metrics()
        self.live()
        self.dashboard.set_status("reset" + (" (new engine)" if rebuild else ""))

    # ---- what-if replay (see _replay.py) ------------------------------------------------------
    def replay(self, **changes: Any) -> Comparison:
        """Replay the recorded workload (same requests, same arrival steps) on a second engine with
        ``changes`` to this one's config (e.g. ``num_kvcache_blocks=16``), closed when done; the
        ``Comparison`` shows both runs (``.table()``, ``.figure()``, or display it)."""
        self._check_open()
        return compare(self, **changes)

    @property
    def replay_panel(self) -> ReplayPanel:
        """The replay form with its table and figure (display it in a cell)."""
        if self._replay_panel is None:
            self._replay_panel = ReplayPanel(self)
        return self._replay_panel

    # ---- frozen copies ---------------------------------------------------------------------------
    def freeze(self, view: str = "blocks") -> FrozenFigure:
        """A static copy of a view ("blocks", "timeline" or "timing") as drawn now, at the shown
        step: it keeps showing that moment while the live views move on."""
        figures = {
            "blocks": self.block_view.figure,
            "timeline": self.timeline_view.figure,
            "timing": self.timing_view.figure,
        }
        if view not in figures:
            raise ValueError(f"view={view!r}: choose one of {sorted(figures)}")
        self.flush()
        step = self.shown_step
        snap = self.history.snapshot_at(step) if view == "blocks" and step is not None else None
        frozen = FrozenFigure.of(view, step, figures[view], snap)
        self.frozen.append(frozen)
        return frozen

    # ---- time travel and integrity ---------------------------------------------------------------
    def show_step(self, step_index: int) -> None:
        """Show every view as it was after step ``step_index`` (also moves the slider)."""
        first, last = self.history.first_step, self.history.last_step
        if first is None or not first <= step_index <= last:
            kept = "empty" if first is None else f"steps {first}..{last}"
            raise ValueError(f"step {step_index} is not in the kept history ({kept})")
        self._pinned = None if step_index == last else step_index
        self.redraw()

    def live(self) -> None:
        """Back to the latest step."""
        self._pinned = None
        self.redraw()

    @property
    def shown_step(self) -> int | None:
        return self._pinned if self._pinned is not None else self.history.last_step

    @property
    def integrity_overlay(self) -> bool:
        """Check the cache's invariants (``LLM.check_integrity()``) at every step and mark the
        blocks a violation names on the grid."""
        return self._check

    @integrity_overlay.setter
    def integrity_overlay(self, on: bool) -> None:
        self._check = bool(on)
        self.dashboard.set_value(self.controls.integrity, self._check)
        latest = self.history.latest
        if self._check and latest is not None:
            self.history.fill(latest.step, snapshot=self.llm.snapshot(check=True))
        self.redraw()

    # ---- display ---------------------------------------------------------------------------------
    def renew_figures(self, names: list[str]) -> list[str]:
        """New figure widgets for the views the page drew blank (``Dashboard.renew``), at most
        ``MAX_RENEWALS`` times each; returns the names renewed (also kept in ``renewed``)."""
        names = [n for n in names if self.renewed.count(n) < MAX_RENEWALS]
        done = self.dashboard.renew(names)
        if done:
            self.renewed += done
            self.wiring.wire_figure_clicks()
        given_up = sorted({n for n in self.renewed if self.renewed.count(n) >= MAX_RENEWALS})
        if given_up and not done:
            self.dashboard.set_status(
                f"the browser did not set up the {', '.join(given_up)} view(s); run the cell "
                "that shows the workbench again",
                error=True,
            )
        return done

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "running" if self.running else "idle"
        return (
            f"Workbench({self.model!r}, {self.config}, {state}, "
            f"{len(self.history)} steps kept, showing step {self.shown_step})"
        )


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _average(old: float, new: float, weight: float = 0.2) -> float:
    """Exponential moving average (the first value is taken as is)."""
    return new if old == 0.0 else old + weight * (new - old)
