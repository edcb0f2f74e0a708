"""The status line: the last thing an action said, for as long as it is still true.

::

    running: step 57                         while Run is on (the live part, always current)
    step 40 · stopped at step 40: preemption (seq 3 preempted)
    step 12 · RequestError: the prompt is empty ... (at step 12; click for details)

A message (``say``) is dropped once the engine has moved on: at the next ``state`` with another
step, an informational message is gone, so the line never tells of a moment that has passed
("added request 3" long after it ran, "paused" while running again). An error stays until an
action succeeds (``controls/wiring.py``'s guard) and keeps the step it happened at; its
traceback, when there is one, is a click away.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape

import ipywidgets as W


class StatusLine:
    def __init__(self):
        self.widget = W.HTML(value="", layout=W.Layout(margin="0 0 0 12px"))
        self.widget.add_class("nanovllm-status")
        self.text, self.error, self.details = "", False, ""
        self.version = 0  # one more with every message (the guard compares it)
        self._step: int | None = None  # the newest step, as of the last ``state``
        self._said_at: int | None = None
        self.newest_step: Callable[[], int | None] = lambda: self._step  # set by the workbench
        self._running = self._closed = False

    def say(self, text: str, error: bool = False, details: str = "") -> None:
        self.text, self.error, self.details = text, error, details
        self.version += 1
        self._said_at = self.newest_step()
        self._render()

    def clear(self) -> None:
        self.say("")

    def state(self, step: int | None, running: bool, closed: bool = False) -> None:
        """The engine's state now; a message said at another step is dropped (not errors)."""
        self._step, self._running, self._closed = step, running, closed
        if self.text and not self.error and step != self._said_at:
            self.text = ""
        self._render()

    def _render(self) -> None:
        if self._closed:
            live = "" if self.text else "closed"
        elif self._running:
            live = f"running: step {self._step}" if self._step is not None else "running"
        else:
            live = f"step {self._step}" if self._step is not None else ""
        parts = [f"<span style='color:#555'>{escape(live)}</span>"] if live else []
        if self.text:
            color = "#b91c1c" if self.error else "#555"
            message = f"<span style='color:{color}'>{escape(self.text)}</span>"
            if self.error and self._said_at is not None:
                message += f" <span style='color:#555'>(at step {self._said_at})</span>"
            if self.details:
                message = (
                    f"<details style='display:inline'><summary>{message}</summary>"
                    f"<pre style='font-size:11px'>{escape(self.details)}</pre></details>"
                )
            parts.append(message)
        html = " · ".join(parts)
        if self.widget.value != html:
            self.widget.value = html
