"""Stage: what the workbench shows, and when. It holds the History of the engine's steps, the
Selection, the redraw gate and the dashboard (views, controls, status line)::

    on_step(record) -> FrameTaker.take -> History -> gate.request()      (the engine's observer)
    gate: a frame when the page is ready -> draw_frame():
        DrawContext.of_history(History, Selection) -> Dashboard.draw -> every view
    live / show_step / pick / pick_block / integrity / freeze / renew_figures: the Workbench's
    public methods of what is shown (it hands them on): change the Selection or the figures,
    and draw now

It reads the engine only through ``FrameTaker`` (snapshots, metrics) and drives nothing: the
Workbench (workbench.py) and its Driver do.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable

from .controls.toolbar import Controls
from .dashboard import Dashboard
from .model.frames import FrameTaker
from .model.history import History, RecordedSteps
from .model.selection import Selection, pick_in
from .options import Options
from .pacing import RedrawGate
from .views import DrawContext, ViewSetup
from .views.figures import plotly_module
from .views.frozen import FrozenFigure

MAX_RENEWALS = 3  # new figure widgets per view, when the page keeps drawing it blank


class Stage:
    def __init__(self, options: Options, setup: ViewSetup, text: Callable):
        self.options, self.text = options, text
        self.history = History(options.history_steps, options.history_bytes)  # the one store
        self.recorder = RecordedSteps(self.history)  # its records as DataFrames
        self.frames = FrameTaker(self.history, options.snapshot_every_step)
        self.selection = Selection()
        self.gate = RedrawGate(options.redraw_interval)
        self.controls = Controls()
        self.status = self.controls.status_line
        self.status.newest_step = lambda: self.history.last_step
        self.dashboard = Dashboard(setup, self.controls, (self.gate.page, plotly_module()))
        self.frozen: list[FrozenFigure] = []  # every figure freeze() made, in order
        self.renewed: list[str] = []  # figures renewed because the page drew them blank
        self.observer_time = 0.0  # seconds spent in the step observer, redraws included
        self.running: Callable[[], bool] = lambda: False  # the driver's run state
        self._failing = False  # the last frame failed (a view, or around the views)
        self.gate.draw = self.draw_frame
        self.gate.page.observe(lambda ch: ch["new"] and self.renew_figures(ch["new"]), "blank")

    def driver_callbacks(self) -> dict:
        """What the Driver reports to (driver.py): the status line, the toggle, the views."""
        c = self.controls
        return dict(
            say=self.status.say,
            running=self.show_running,
            stopped=self.run_stopped,
            clicks_in=self.gate.clicks_in,
            delay=lambda: c.delay.value,
            breakpoint=c.show_breakpoint,
        )

    @property
    def closed(self) -> bool:
        return self.frames.llm is None or self.frames.llm.closed

    def on_step(self, record) -> None:
        """Engine observer: keep the step as a frame; the gate decides when the views show it."""
        started = time.perf_counter()
        try:
            self.frames.take(record)
            self.gate.request()
        except Exception as e:  # shown, with its traceback; the engine goes on
            why = f"the workbench could not record step {record.step}: {type(e).__name__}: {e}"
            self.status.say(why, True, traceback.format_exc())
        self.observer_time += time.perf_counter() - started

    def context(self) -> DrawContext:
        """What the views draw: the shown step's frames, or, with none kept (after a reset), the
        cache as it is now."""
        empty = self.history.last_step is None and not self.closed
        now = self.frames.snapshot() if empty else None
        return DrawContext.of_history(
            self.history, self.selection, self.options.window, self.text, now
        )

    def draw_frame(self) -> None:
        """Bring every view up to date with the shown step (the latest unless time travelling):
        the gate's ``draw``, called when it lets a frame go out (in the engine's observer, on the
        gate's timer, or for an action). It never raises: a view's failure is shown in that view
        and the status line (the others are drawn), a failure around the views (the context, the
        slider) in the status line with its traceback; the next frame that draws clears either."""
        try:
            failed = self._draw_views()
        except Exception as e:  # raised here, generate() would end in ObserverError (llm.py)
            step = self.selection.shown_step(self.history.last_step)
            why = f"the workbench could not draw step {step}: {type(e).__name__}: {e}"
            self.status.say(why, True, traceback.format_exc())
            self._failing = True
            return
        if failed:
            self.status.say("; ".join(failed) + " (its panel shows the traceback)", error=True)
        elif self._failing:
            self.status.clear()
        self._failing = bool(failed)

    def _draw_views(self) -> list[str]:
        if self.selection.pinned is None and not self.closed:
            self.frames.complete()  # the live step gets a snapshot and metrics if it had none
        ctx, h = self.context(), self.history
        self.controls.sync_slider(h.first_step, h.last_step, self.selection.pinned)
        failed = self.dashboard.draw(ctx)
        self.status.state(h.last_step, self.running(), self.closed)
        return failed

    # ---- the workbench's public methods of what is shown (wb.live(), wb.pick(...), ...) -------
    def redraw(self) -> None:
        """Bring every view up to date with the shown step, now."""
        self.gate.force()

    def flush(self) -> None:
        """Redraw now if steps arrived since the last redraw."""
        self.gate.flush()

    def live(self) -> None:
        """Back to the latest step."""
        self.selection.pinned = None
        self.gate.force()

    def show_step(self, step_index: int) -> None:
        """Show every view as it was after step ``step_index`` (also moves the slider)."""
        first, last = self.history.first_step, self.history.last_step
        if first is None or not first <= step_index <= last:
            kept = "empty" if first is None else f"steps {first}..{last}"
            raise ValueError(f"step {step_index} is not in the kept history ({kept})")
        self.selection.pinned = None if step_index == last else step_index
        self.gate.force()

    @property
    def shown_step(self) -> int | None:
        return self.selection.shown_step(self.history.last_step)

    def set_integrity(self, on: bool) -> None:
        self.selection.integrity = self.frames.check = on
        self.controls.set_value(self.controls.integrity, on)
        if on:
            self.frames.recheck()
        self.gate.force()

    def pick(self, seq_id: int | None) -> None:
        """Show this request's block table (and outline its blocks on the grid); None: none."""
        self.selection.picked = seq_id
        self.gate.force()

    def pick_block(self, *block_ids: int) -> None:
        """Pick a request holding one of ``block_ids`` (a grid cell's) in the shown snapshot; a
        shared block: the next of its owners at each click."""
        step = self.shown_step
        snap = self.history.snapshot_at(step) if step is not None else None
        seq_id = pick_in(snap.owners if snap else {}, block_ids, self.selection.picked)
        if seq_id is None:
            self.status.say(f"block {block_ids[0]} belongs to no request")
        else:
            self.pick(seq_id)

    def freeze(self, view: str = "blocks") -> FrozenFigure:
        """A static copy of a view ("blocks", "timeline", "timing", ...) as drawn at the shown
        step: it keeps showing that moment while the live views move on."""
        self.gate.flush()
        frozen = self.dashboard.freeze(view, self.context())
        self.frozen.append(frozen)
        return frozen

    def renew_figures(self, names: list[str]) -> list[str]:
        """New figure widgets for the views the page drew blank, at most ``MAX_RENEWALS`` times
        each; returns the names renewed (also kept in ``renewed``)."""
        done = self.dashboard.renew([n for n in names if self.renewed.count(n) < MAX_RENEWALS])
        self.renewed += done
        if done:
            self.status.say(f"the browser drew the {', '.join(done)} view(s) blank: renewed")
        given_up = sorted({n for n in self.renewed if self.renewed.count(n) >= MAX_RENEWALS})
        if given_up and not done:
            self.status.say(
                f"the browser did not set up the {', '.join(given_up)} view(s); run the cell "
                "that shows the workbench again",
                error=True,
            )
        return done

    def show_running(self, on: bool) -> None:
        self.controls.show_running(on)
        self.status.state(self.history.last_step, on, self.closed)

    def run_stopped(self) -> None:
        """The run loop ended: the page draws the toggle's answer first, then the views."""
        if self.closed:
            self.controls.show_closed(True)
        else:
            self.gate.hold()
            self.gate.soon()

    def clear(self) -> None:
        """Forget every step (the History: every view then draws nothing) and what was picked
        among them (the Selection's request and step: a reset's requests are gone)."""
        self.history.clear()
        self.selection.forget_requests()

    def close(self) -> None:
        self.gate.close()
        self.controls.show_closed(True)
        self.status.state(self.history.last_step, False, closed=True)
