"""Controls: the buttons, the add-request form and the time-travel slider, as plain ipywidgets.

This module only builds and lays out widgets; ``Workbench`` wires their callbacks. Tests drive them
the way a browser does: ``step_button.click()``, ``run_toggle.value = True``, ``slider.value = 3``.

::

    [Step] [x 1] [Run/Pause] [until: event v] [request] delay [0.0] [Reset] [x] integrity  status
    prompt [..................] max tokens [32] temperature [0.0] copies [1] [Add request]
    step [=========o-----] [Live]
"""

from __future__ import annotations

import ipywidgets as W

from ._breakpoints import EVENTS


class Controls:
    def __init__(self):
        small = W.Layout(width="auto")
        self.step_button = W.Button(
            description="Step", icon="step-forward", tooltip="run one engine step", layout=small
        )
        self.steps = W.BoundedIntText(
            value=1,
            min=1,
            max=10_000,
            description="x",
            style={"description_width": "initial"},
            layout=W.Layout(width="90px"),
            tooltip="steps per click",
        )
        self.run_toggle = W.ToggleButton(
            value=False,
            description="Run",
            icon="play",
            layout=small,
            tooltip="step continuously until paused or idle",
        )
        # "run until" (see _breakpoints.py): Run stops after the first step with the event
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
        self.delay = W.BoundedFloatText(
            value=0.0,
            min=0.0,
            max=10.0,
            step=0.05,
            description="delay s",
            style={"description_width": "initial"},
            layout=W.Layout(width="130px"),
            tooltip="pause between steps while running",
        )
        self.reset_button = W.Button(
            description="Reset",
            icon="undo",
            layout=small,
            tooltip="abort all requests and clear the history",
        )
        self.integrity = W.Checkbox(
            value=False, description="integrity check", indent=False, layout=small
        )
        self.status = W.HTML(value="", layout=W.Layout(margin="0 0 0 12px"))

        self.prompt = W.Text(
            value="What is a block table?", description="prompt", layout=W.Layout(width="360px")
        )
        self.max_tokens = W.BoundedIntText(
            value=32,
            min=1,
            max=1_000_000,
            description="max tokens",
            style={"description_width": "initial"},
            layout=W.Layout(width="150px"),
        )
        self.temperature = W.BoundedFloatText(
            value=0.0,
            min=0.0,
            max=5.0,
            step=0.1,
            description="temperature",
            style={"description_width": "initial"},
            layout=W.Layout(width="160px"),
        )
        self.copies = W.BoundedIntText(
            value=1,
            min=1,
            max=256,
            description="copies",
            style={"description_width": "initial"},
            layout=W.Layout(width="120px"),
        )
        self.add_button = W.Button(
            description="Add request", icon="plus", button_style="primary", layout=small
        )

        self.slider = W.IntSlider(
            value=0,
            min=0,
            max=0,
            description="step",
            disabled=True,
            continuous_update=True,
            layout=W.Layout(width="520px"),
        )
        self.live_button = W.Button(
            description="Live", icon="forward", layout=small, tooltip="back to the latest step"
        )

        self.widget = W.VBox(
            [
                W.HBox(
                    [
                        self.step_button,
                        self.steps,
                        self.run_toggle,
                        self.until,
                        self.until_request,
                        self.delay,
                        self.reset_button,
                        self.integrity,
                        self.status,
                    ],
                    layout=W.Layout(align_items="center", flex_flow="row wrap"),
                ),
                W.HBox(
                    [self.prompt, self.max_tokens, self.temperature, self.copies, self.add_button],
                    layout=W.Layout(align_items="center", flex_flow="row wrap"),
                ),
                W.HBox([self.slider, self.live_button], layout=W.Layout(align_items="center")),
            ]
        )

    def show_running(self, running: bool) -> None:
        """Reflect the run state on the toggle (its observer must ignore this change)."""
        if self.run_toggle.value != running:
            self.run_toggle.value = running
        self.run_toggle.description = "Pause" if running else "Run"
        self.run_toggle.icon = "pause" if running else "play"
        self.step_button.disabled = running
