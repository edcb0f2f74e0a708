"""Dashboard: the controls and the registry's views, laid out, drawn, frozen and renewed.

::

    +------------------------------------------------------------------+
    | controls: Step, Run/Pause, until, Reset, integrity, status        |
    |           add-request form, time-travel slider, Live              |
    +--------------------------------------+---------------------------+
    | the "left" views of a run, stacked    | its "right" views         |
    | (blocks, timeline)                    | (metrics)                 |
    +--------------------------------------+---------------------------+
    | a "wide" view: a row of its own (timing)                          |
    +--------------------------------------+---------------------------+
    | (block table)                         | (requests)                |
    +--------------------------------------+---------------------------+
    | (prefix tree)                                                     |
    +------------------------------------------------------------------+

Every loop here goes over ``views/``'s registry, in its order: nothing names a view but the
registry. A view that does not apply to the engine (``View.left_out``) is not built: the page
shows no empty chart for it, and asking for it (``wb.speculation_view``, ``wb.freeze(...)``) says
why. ``draw(ctx)`` draws each view; a view that fails shows its failure and the others are
drawn all the same. It knows no engine: the Workbench decides what to draw and when.
"""

from __future__ import annotations

import ipywidgets as W

from .controls.toolbar import Controls
from .views import Click, DrawContext, View, ViewSetup, build_views, draw_views
from .views.figures import LEFT_COLUMN_WIDTH, PANEL_MIN_WIDTH
from .views.frozen import FrozenFigure


class Dashboard:
    def __init__(self, setup: ViewSetup, controls: Controls, hidden: tuple[W.Widget, ...] = ()):
        self.views: list[View]
        self.views, self.left_out = build_views(setup)  # the views that apply to this engine
        self.controls = controls
        self.widget = W.VBox(
            [
                controls.widget,
                *_rows(self.views),
                W.Box(list(hidden), layout=W.Layout(display="none")),  # the page's helpers
            ]
        )
        self.widget.add_class("nanovllm-dashboard")  # the page's checks look inside it

    def view(self, name: str) -> View:
        for v in self.views:
            if v.name == name:
                return v
        raise KeyError(name)

    def by_attribute(self, attribute: str) -> View | None:
        return next((v for v in self.views if v.attribute == attribute), None)

    def why_absent(self, key: str) -> str | None:
        """Why the view named (or reached as) ``key`` is not here, if the registry has it but it
        does not apply to this engine (``View.left_out``)."""
        for cls, why in self.left_out.items():
            if key in (cls.name, cls.attribute):
                return f"the {cls.name} view is not on this dashboard: {why}"
        return None

    def on_click(self, handler) -> None:
        """Where every view's clicks go."""
        for v in self.views:
            v.on_click = handler

    def draw(self, ctx: DrawContext) -> list[str]:
        """Draw every view; returns a line per view that failed (the others are drawn)."""
        return draw_views(self.views, ctx)

    def freeze(self, name: str, ctx: DrawContext) -> FrozenFigure:
        names = [v.name for v in self.views if v.figure is not None]
        if name not in names:
            why = self.why_absent(name)
            raise ValueError(f"view={name!r}: " + (why or f"choose one of {names}"))
        return self.view(name).freeze(ctx)

    def renew(self, names) -> list[str]:
        """A new figure widget for each named view (see ``View.renew``); the names renewed."""
        known = {v.name: v for v in self.views if v.figure is not None}
        done = [n for n in names if n in known]
        for n in done:
            known[n].renew()
        return done


def _rows(views: list[View]) -> list[W.Widget]:
    """Runs of "left" / "right" views side by side (left stacked in a fixed-width column, right
    in the rest); a "wide" view alone in its row."""
    rows, left, right = [], [], []

    def close_run() -> None:
        if left or right:
            lcol = W.VBox(
                [v.widget for v in left], layout=W.Layout(width=LEFT_COLUMN_WIDTH, flex="0 0 auto")
            )
            rcol = W.VBox(
                [v.widget for v in right],
                layout=W.Layout(flex="1 1 auto", min_width=PANEL_MIN_WIDTH, padding="0 0 0 8px"),
            )
            rows.append(W.HBox([lcol, rcol]))
            left.clear()
            right.clear()

    for v in views:
        if v.column == "wide":
            close_run()
            rows.append(v.widget)
        elif v.column == "right" or not right:
            (right if v.column == "right" else left).append(v)
        else:  # a left view after a right one starts a new run
            close_run()
            left.append(v)
    close_run()
    return rows


__all__ = ["Dashboard", "Click"]
