"""Controls: the buttons, the add-request form, the time-travel slider and the status line.

This module only builds and lays out widgets (with fields.py); ``wiring.py`` connects them to the
Workbench's public API. Tests drive them the way a browser does: ``step_button.click()``,
``run_toggle.value = True``, ``slider.value = 3``.

::

    [Step] [x 1] [Run/Pause] [until: event v] [request] delay [0.0] [Reset] [x] integrity  status
    prompt [..................] max tokens [32] temperature [0.0] copies [1] [Add request]
    step [=========o-----] [Live]
"""

from __future__ import annotations

import ipywidgets as W

from ..model.breakpoints import EVENTS
from ..views.base import by_code
from .fields import button, number, row
from .status import StatusLine


class Controls:
    def __init__(self):
        self.syncing = False  # True while code (not the user) changes a control
        self.step_button = button("Step", "step-forward", "run one engine step")
        self.steps = number("x", 1, 1, 10_000, width=90, tooltip="steps per click")
        self.run_toggle = W.ToggleButton(
            value=False,
            description="Run",
            icon="play",
            layout=W.Layout(width="auto"),
            tooltip="step continuously until paused or idle",
        )
        # "run until" (see model/breakpoints.py): Run stops after the first step with the event
        self.until = W.Dropdown(
            options=[("until: -", ""), *((f"until: {e}", e) for e in EVENTS)],
            value="",  # not None: a Dropdown shows None as an empty box
            layout=W.Layout(width="170px"),
            tooltip="Run stops after the first step with this event",
        )
        self.until_request = W.Text(
            value="",
            placeholder="any request",
            layout=W.Layout(width="100px"),
            tooltip="request id for the event (blank: any request)",
        )
        self.delay = number(
            "delay s", 0.0, 0.0, 10.0, width=130, step=0.05, tooltip="pause between steps"
        )
        self.reset_button = button("Reset", "undo", "abort all requests and clear the history")
        self.integrity = W.Checkbox(
            value=False, description="integrity check", indent=False, layout=W.Layout(width="auto")
        )
        self.status_line = StatusLine()
        self.status = self.status_line.widget

        self.prompt = W.Text(
            value="What is a block table?", description="prompt", layout=W.Layout(width="360px")
        )
        self.max_tokens = number("max tokens", 32, 1, 1_000_000, width=150)
        self.temperature = number("temperature", 0.0, 0.0, 5.0, width=160, step=0.1)
        self.copies = number("copies", 1, 1, 256, width=120)
        self.add_button = button("Add request", "plus", style="primary")

        self.slider = W.IntSlider(
            value=0,
            min=0,
            max=0,
            description="step",
            disabled=True,
            continuous_update=True,
            layout=W.Layout(width="520px"),
        )
        self.live_button = button("Live", "forward", "back to the latest step")

        self.widget = W.VBox(
            [
                row(
                    self.step_button,
                    self.steps,
                    self.run_toggle,
                    self.until,
                    self.until_request,
                    self.delay,
                    self.reset_button,
                    self.integrity,
                    self.status,
                ),
                row(self.prompt, self.max_tokens, self.temperature, self.copies, self.add_button),
                row(self.slider, self.live_button, wrap=False),
            ]
        )

    def by_code(self):
        """Change controls without their observers acting on it (``wiring.py`` checks)."""
        return by_code(self, "syncing")

    def set_value(self, widget: W.ValueWidget, value) -> None:
        with self.by_code():
            if widget.value != value:
                widget.value = value

    def show_running(self, running: bool) -> None:
        """Reflect the run state on the toggle."""
        self.set_value(self.run_toggle, running)
        self.run_toggle.description = "Pause" if running else "Run"
        self.run_toggle.icon = "pause" if running else "play"
        self.step_button.disabled = running

    def show_breakpoint(self, bp) -> None:
        """The "until" menu and request box show ``bp`` (a Breakpoint, or None)."""
        self.set_value(self.until, "" if bp is None else bp.event)
        rid = "" if bp is None or bp.request_id is None else str(bp.request_id)
        self.set_value(self.until_request, rid)

    def show_closed(self, closed: bool) -> None:
        """A closed engine: Reset becomes Rebuild, and what needs an engine is disabled."""
        self.reset_button.description = "Rebuild" if closed else "Reset"
        self.reset_button.icon = "refresh" if closed else "undo"
        self.reset_button.button_style = "warning" if closed else ""
        for w in (self.step_button, self.run_toggle, self.add_button):
            w.disabled = closed

    def sync_slider(self, first: int | None, last: int | None, value: int | None) -> None:
        """The slider spans the kept steps and stands at ``value`` (None: the latest)."""
        s = self.slider
        with self.by_code():
            if first is None:
                s.min, s.max, s.value, s.disabled = 0, 0, 0, True
                return
            if first > s.max:  # keep min <= max while moving both
                s.max = last
            s.min, s.max, s.disabled = first, last, False
            s.value = last if value is None else value
