"""Whose controls: one line above a cache source's views saying who drives the engine they show.

::

    Step / Run / Pause drive our engine only (widgets.workbench): this vLLM runs on its own and
    is driven by its clients; the watch only listens.                      (source.can_step False)
    This is our engine in this kernel: step it with widgets.workbench() or llm.step(); ...  (True)

A vLLM is driven by its own clients: the watch has no Step / Run / Pause buttons, and a learner who
knows them from the workbench should read why here, not look for them. Drawn from the context's
cache source alone (its ``can_step``); with none, the line is empty.
"""

from __future__ import annotations

from html import escape

import ipywidgets as W

from .base import DrawContext, View

NOTE = {
    False: "Step / Run / Pause drive our engine only (widgets.workbench): this vLLM runs on its "
    "own and is driven by its clients; the watch only listens.",
    True: "This is our engine in this kernel: step it with widgets.workbench() or llm.step(); "
    "the watch follows its cache.",
}


class ControlsNote(View):
    name, attribute = "controls_note", "controls_note"

    def build(self):
        self.html = ""  # as drawn
        self.line = W.HTML(value="")
        return self.line

    def draw(self, ctx: DrawContext) -> None:
        source = ctx.cache
        text = "" if source is None else NOTE[bool(source.can_step)]
        html = f"<i style='color:#555'>{escape(text)}</i>" if text else ""
        if html != self.html:
            self.html = self.line.value = html
