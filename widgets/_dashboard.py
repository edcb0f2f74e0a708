"""Dashboard: the views and the controls, laid out, and drawn from recorded frames.

::

    +------------------------------------------------------------------+
    | controls: Step, Run/Pause, Reset, integrity, add-request form     |
    |           time-travel slider, Live                               |
    +--------------------------------------+---------------------------+
    | KV cache blocks (BlockView)          | metrics (MetricsPanel)    |
    | sequence states (TimelineView)       |                           |
    +--------------------------------------+---------------------------+
    | step timing (TimingView)                                         |
    +--------------------------------------+---------------------------+
    | a request's block table              | requests (RequestsPanel)  |
    | (BlockTableView)                     |                           |
    +--------------------------------------+---------------------------+
    | prefix cache (PrefixTreeView)                                    |
    +------------------------------------------------------------------+

It knows nothing about the engine. The timeline and timing views read windows of the ``History``
they are given (they keep no per-step data of their own); ``draw(...)`` shows one step. The
``Workbench`` decides which step and when.
"""

from __future__ import annotations

from contextlib import contextmanager
from html import escape

import ipywidgets as W
import plotly.graph_objects as go

from nanovllm.engine.observe.snapshot import EngineSnapshot

from ._block_table import BlockTableView
from ._blocks import BlockView
from ._controls import Controls
from ._history import Frame, History
from ._layout import LEFT_COLUMN_WIDTH, PANEL_MIN_WIDTH, figure_box
from ._metrics import MetricsPanel
from ._prefix_tree import PrefixTreeView
from ._requests import RequestsPanel
from ._texts import SequenceText
from ._timeline import TimelineView
from ._timing import TimingView


class Dashboard:
    def __init__(
        self,
        history: History,
        num_blocks: int,
        block_size: int,
        window: int = 100,
        extra: list | None = None,
        texts: SequenceText | None = None,
    ):
        self.block_view = BlockView(num_blocks, block_size)
        texts = texts or SequenceText(lambda: None)
        self.block_table_view = BlockTableView(block_size, texts)
        self.requests_panel = RequestsPanel(texts)
        self.prefix_tree_view = PrefixTreeView(block_size)
        self.snapshot: EngineSnapshot | None = None  # the one shown (clicks on the grid read it)
        self.timeline_view = TimelineView(history, window=window)
        self.timing_view = TimingView(history, window=window)
        self.metrics_panel = MetricsPanel()
        self.controls = Controls()
        self.syncing = False  # True while code (not the user) changes a control
        self.status_error, self.status_version = False, 0  # what the status line shows, and when
        # every live figure, by the name the page reports it under (see renew)
        self.views = {
            "blocks": self.block_view,
            "timeline": self.timeline_view,
            "timing": self.timing_view,
            "block_table": self.block_table_view,
            "prefix_tree": self.prefix_tree_view,
        }
        box = {n: figure_box(n, v.figure) for n, v in self.views.items() if n != "block_table"}
        self.figure_boxes = {**box, "block_table": self.block_table_view.figure_box}
        # the grid and the timeline share the left column, so the tall panel leaves no gap
        self.widget = W.VBox(
            [
                self.controls.widget,
                _beside(
                    W.VBox([box["blocks"], box["timeline"]]),
                    self.metrics_panel.widget,
                ),
                box["timing"],
                _beside(W.Box([self.block_table_view.widget]), self.requests_panel.widget),
                box["prefix_tree"],
                *(extra or []),  # invisible helpers (the redraw acknowledgement)
            ]
        )
        self.widget.add_class("nanovllm-dashboard")  # the page's checks look inside it

    def draw(
        self,
        step: int | None,
        frame: Frame | None,
        snap: EngineSnapshot | None,
        totals: Frame | None,
        *,
        live: bool,
        last_step: int | None,
        integrity: bool,
    ) -> None:
        """Show ``step`` (None: no step yet): its frame, ``snap`` (its snapshot or an earlier one)
        and the metrics of ``totals`` (its frame or an earlier one)."""
        if snap is not None:
            when = "now" if step is None else f"after step {step}"
            if step is not None and snap.step != step + 1:
                when += f" (nearest snapshot: after step {snap.step - 1})"
            self.block_view.draw(snap, title=f"KV cache blocks {when}")
        else:
            self.block_view.figure.layout.title.text = (
                f"KV cache blocks: no snapshot kept for step {step}"
            )
        self.timeline_view.draw(
            step, title=None if step is None else f"Sequence states up to step {step}"
        )
        self.timing_view.draw(step)
        self.metrics_panel.draw(frame, totals, live=live, last_step=last_step, integrity=integrity)
        self.draw_cache_views(snap)

    def draw_cache_views(self, snap: EngineSnapshot | None) -> None:
        """The picked request's block table (outlined on the grid), the requests, the tree."""
        self.snapshot = snap
        if snap is not None:
            with self.by_code():
                self.block_table_view.sync_options(snap)
        picked = self.block_table_view.picked
        blocks = self.block_table_view.draw(snap)
        self.block_view.highlight(blocks, "" if picked is None else f"seq {picked}")
        self.requests_panel.draw(snap)
        self.prefix_tree_view.draw(snap)

    # ---- figures the page failed to set up ------------------------------------------------------
    def renew(self, names) -> list[str]:
        """Give each named figure a new FigureWidget with the same data and layout, in the same
        box; returns the names renewed. For a figure whose page model was lost: anywidget gives a
        model 2 s to load its module (plotly's is 4.9 MB, loaded once per figure) and, past that,
        drops every message to it, so the figure stays blank. A new model loads on a page that
        is no longer busy. Click handlers are the caller's to wire again (``Wiring``)."""
        renewed = []
        for name in names:
            view = self.views.get(name)
            if view is None:
                continue
            old = view.figure
            view.figure = go.FigureWidget(old)
            self.figure_boxes[name].children = (view.figure,)
            old.close()
            renewed.append(name)
        return renewed

    # ---- controls, changed by code -------------------------------------------------------------
    @contextmanager
    def by_code(self):
        """Change controls without their observers acting on it."""
        self.syncing, was = True, self.syncing
        try:
            yield
        finally:
            self.syncing = was

    def set_value(self, widget, value) -> None:
        with self.by_code():
            if widget.value != value:
                widget.value = value

    def show_running(self, running: bool) -> None:
        with self.by_code():
            self.controls.show_running(running)

    def sync_slider(self, first: int | None, last: int | None, value: int | None) -> None:
        s = self.controls.slider
        with self.by_code():
            if first is None:
                s.min, s.max, s.value, s.disabled = 0, 0, 0, True
                return
            if first > s.max:  # keep min <= max while moving both
                s.max = last
            s.min, s.max, s.disabled = first, last, False
            s.value = last if value is None else value

    def show_closed(self, closed: bool) -> None:
        """A closed engine: Reset becomes Rebuild, and what needs an engine is disabled."""
        c = self.controls
        c.reset_button.description = "Rebuild" if closed else "Reset"
        c.reset_button.icon = "refresh" if closed else "undo"
        c.reset_button.button_style = "warning" if closed else ""
        for w in (c.step_button, c.run_toggle, c.add_button):
            w.disabled = closed

    def set_status(self, text: str, error: bool = False) -> None:
        self.status_error, self.status_version = error, self.status_version + 1
        color = "#b91c1c" if error else "#555"
        self.controls.status.value = f"<span style='color:{color}'>{escape(text)}</span>"


def _beside(left: W.Box, panel: W.Widget) -> W.HBox:
    """A row: ``left`` as the fixed-width left column, ``panel`` taking the rest."""
    left.layout = W.Layout(width=LEFT_COLUMN_WIDTH, flex="0 0 auto")
    right = W.Box(
        [panel], layout=W.Layout(flex="1 1 auto", min_width=PANEL_MIN_WIDTH, padding="0 0 0 8px")
    )
    return W.HBox([left, right])
