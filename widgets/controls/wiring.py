"""Wiring: the one place where a click becomes a call of the Workbench's public API.

::

    Step   -> wb.step(steps)            Run/Pause -> wb.run() / wb.pause()
    Add    -> wb.add_request x copies   Reset     -> wb.reset() (wb.rebuild() when closed)
    slider -> wb.show_step(k)           Live      -> wb.live()
    integrity -> wb.integrity_overlay = on
    until / request id -> wb.breakpoint = Breakpoint(event, request id) (None: "until: -")
    a view's Click: "request" -> wb.pick(seq)   (the dropdown, a timeline row; no seq: none)
                    "blocks"  -> wb.pick_block(b, ...)   (a grid cell)
                    "abort"   -> wb.abort(seq)  (a request row's button)

A control changed by code (``Controls.by_code()``) acts on nothing. ``guard`` runs an action and
shows a failure in the status line, where it stays until an action succeeds (failing actions only
replace it with their own error). The workbench is reached only through the methods named above.
"""

from __future__ import annotations

from collections.abc import Callable

from nanovllm.errors import NanoVLLMError

from ..model.breakpoints import Breakpoint, parse_request_id
from ..views.base import Click


class Wiring:
    def __init__(self, bench):
        self.bench, c = bench, bench.controls
        self.controls, self.status = c, c.status_line
        b = bench
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

    def on_click(self, click: Click) -> None:
        """A view's click (see the module docstring)."""
        b = self.bench
        action = {
            "request": lambda: b.pick(click.ids[0] if click.ids else None),
            "blocks": lambda: b.pick_block(*click.ids),
            "abort": lambda: b.abort(click.ids[0]),
        }[click.kind]
        self.guard(action)

    def guard(self, action: Callable[[], object]) -> None:
        """Run a control's action; a failure is shown in the status line, not raised."""
        said = self.status.version
        try:
            action()
        except (NanoVLLMError, ValueError, RuntimeError) as e:
            self.status.say(f"{type(e).__name__}: {e}", error=True)
            return
        if self.status.error and self.status.version == said:
            self.status.clear()  # it worked: the last error is no longer true

    def _by_user(self, action: Callable[[], object]) -> None:
        if not self.controls.syncing:
            self.guard(action)

    def _add_from_form(self) -> None:
        c = self.controls
        ids = [
            self.bench.add_request(c.prompt.value, c.max_tokens.value, c.temperature.value)
            for _ in range(c.copies.value)
        ]
        self.status.say(f"added request{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}")

    def _breakpoint_from_form(self) -> None:
        c = self.controls
        event, request_id = c.until.value, parse_request_id(c.until_request.value)
        self.bench.breakpoint = Breakpoint(event, request_id) if event else None

    def _on_toggle(self, change) -> None:
        self._by_user(self.bench.run if change["new"] else self.bench.pause)
        if change["new"] and not self.bench.running and not self.controls.syncing:
            self.controls.show_running(False)  # run() refused: put the toggle back
