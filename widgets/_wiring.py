"""Wiring: the one place where a click on a control becomes a call of the Workbench's public API.

::

    Step   -> wb.step(steps)            Run/Pause -> wb.run() / wb.pause()
    Add    -> wb.add_request x copies   Reset     -> wb.reset() (wb.rebuild() when closed)
    slider -> wb.show_step(k)           Live      -> wb.live()
    integrity -> wb.integrity_overlay = on
    until / request id -> wb.breakpoint = Breakpoint(event, request id) (None: "until: -")
    request dropdown -> wb.pick(seq)    a grid cell -> wb.pick_block(b)   a timeline row -> wb.pick
    a request row's Abort -> wb.abort(seq)
    a figure the page left blank -> wb.renew_figures(names) (reported by the DrawAck view)

A control changed by code (``Dashboard.by_code()``) acts on nothing. ``guard`` runs an action and
shows a failure in the status line, where it stays until an action succeeds (failing actions only
replace it with their own error).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from nanovllm.errors import NanoVLLMError

from ._breakpoints import Breakpoint, parse_request_id

if TYPE_CHECKING:
    from ._workbench import Workbench


class Wiring:
    def __init__(self, bench: Workbench):
        self.bench, self.dashboard = bench, bench.dashboard
        b, c = bench, bench.controls
        c.step_button.on_click(lambda _: self.guard(lambda: b.step(c.steps.value)))
        c.reset_button.on_click(lambda _: self.guard(b.rebuild if b.closed else b.reset))
        c.add_button.on_click(lambda _: self.guard(self._add_from_form))
        c.live_button.on_click(lambda _: self.guard(b.live))
        c.run_toggle.observe(self._on_toggle, "value")
        c.slider.observe(lambda ch: self._by_user(lambda: b.show_step(ch["new"])), "value")
        for w in (c.until, c.until_request):
            w.observe(lambda _: self._by_user(self._breakpoint_from_form), "value")
        c.integrity.observe(
            lambda ch: self._by_user(lambda: setattr(b, "integrity_overlay", ch["new"])), "value"
        )
        self._wire_cache_views()
        bench.backpressure.ack.observe(
            lambda ch: ch["new"] and self.guard(lambda: b.renew_figures(ch["new"])), "blank"
        )

    def _wire_cache_views(self) -> None:
        b = self.bench
        b.block_table_view.picker.observe(
            lambda ch: self._by_user(lambda: b.pick(ch["new"])), "value"
        )
        for slot in b.requests_panel.slots:
            slot.abort_button.on_click(
                lambda _, s=slot: self.guard(lambda: s.seq_id is not None and b.abort(s.seq_id))
            )
        self.wire_figure_clicks()

    def wire_figure_clicks(self) -> None:
        """Clicks on the grid and the timeline (again after ``Dashboard.renew`` made new
        figures)."""
        b = self.bench
        b.block_view.figure.data[0].on_click(self._on_grid)
        b.timeline_view.figure.data[0].on_click(self._on_timeline)

    def _on_grid(self, trace, points, state) -> None:
        if points.xs:
            # a cell of a large cache stands for per_cell blocks: pick its first held one
            b = self.bench
            ncols, per_cell = b.block_view.ncols, b.block_view.per_cell
            first = (int(points.ys[0]) * ncols + int(points.xs[0])) * per_cell
            owners = b.dashboard.snapshot.owners if b.dashboard.snapshot else {}
            held = [k for k in range(first, first + per_cell) if k in owners]
            self.guard(lambda: b.pick_block(held[0] if held else first))

    def _on_timeline(self, trace, points, state) -> None:
        if points.ys:
            self.guard(lambda: self.bench.pick(int(str(points.ys[0]).split()[-1])))

    def guard(self, action: Callable[[], object]) -> None:
        """Run a control's action; a failure is shown in the status line, not raised."""
        shown = self.dashboard.status_version
        try:
            action()
        except (NanoVLLMError, ValueError, RuntimeError) as e:
            self.dashboard.set_status(f"{type(e).__name__}: {e}", error=True)
            return
        if self.dashboard.status_error and self.dashboard.status_version == shown:
            self.dashboard.set_status("")  # it worked: the last error is no longer true

    def _by_user(self, action: Callable[[], object]) -> None:
        if not self.dashboard.syncing:
            self.guard(action)

    def _add_from_form(self) -> None:
        c = self.bench.controls
        ids = [
            self.bench.add_request(c.prompt.value, c.max_tokens.value, c.temperature.value)
            for _ in range(c.copies.value)
        ]
        self.dashboard.set_status(
            f"added request{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}"
        )

    def _breakpoint_from_form(self) -> None:
        c = self.bench.controls
        event, request_id = c.until.value, parse_request_id(c.until_request.value)
        self.bench.breakpoint = Breakpoint(event, request_id) if event else None

    def _on_toggle(self, change) -> None:
        self._by_user(self.bench.run if change["new"] else self.bench.pause)
        if change["new"] and not self.bench.running and not self.dashboard.syncing:
            self.dashboard.show_running(False)  # run() refused: put the toggle back
