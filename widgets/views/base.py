"""The one interface of the dashboard's views, and the one thing they draw from.

::

    DrawContext   data only: the step shown, its frame, a snapshot, the metrics, the frames of the
                  window, the Selection, a text source; what several views derive from these
                  (the picked request's table, the prefix tree, the request rows) computed once
        |
        v
    View.left_out(setup)  why a view does not apply to this engine or source (then it is not
                       built: the speculation view without a speculative_config), or None
    View.draw(ctx)     every view, one signature; errors stay in the view (draw_safely), and
                       a view that failed forgets what it drew (``memo``): the next frame draws
                       it in full, not skipped as equal to a half-drawn one
    View.widget        what the dashboard lays out: a failure line above the view's body
    View.figure        its live figure, if it has one: freeze() copies it, renew() replaces it;
                       fit() sizes it: empty, its title line alone (which says why); else full
    View.on_click      set by the dashboard: clicks leave a view as ``Click``s (pick a request,
                       pick among a cell's blocks, abort a request), never as calls into the engine

A view never sees an engine: the workbench builds each context from its History
(``DrawContext.of_history``); ``widgets.watch`` (watcher.py) builds one that holds only a cache
source (``cache``: a vLLM's KV events, or ours), for the views of its own registry: only the fields
a view reads need to be there. A view keeps no state that a controller must feed or clear; what
it remembers is what it last drew (to skip equal redraws).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from html import escape
from typing import Any, ClassVar

import ipywidgets as W

from nanovllm.engine.observe.prefix_tree import PrefixTree, prefix_tree
from nanovllm.engine.observe.request_rows import RequestRow, request_row
from nanovllm.engine.observe.snapshot import EngineSnapshot

from ..model.history import Frame, History
from ..model.selection import PickedTable, Selection, picked_table
from ..model.states import is_idle
from .figures import Figure, figure_box
from .frozen import FrozenFigure

LOOK_BACK = 2000  # kept frames searched for the picked request's last table
EMPTY_PLOT_PX = 8  # the plot an empty figure keeps below its title line (plotly needs one)


@dataclass(frozen=True)
class ViewSetup:
    """What the views are drawn for, fixed for one engine."""

    num_blocks: int
    block_size: int
    window: int = 100  # the steps the per-step views show
    token_budget: int | None = None  # max_num_batched_tokens
    speculative: bool = False  # the engine drafts tokens (a speculative_config)

    @classmethod
    def of_engine(cls, config, window: int) -> ViewSetup:
        """For an engine of this ``Config`` (nanovllm.config: read, not imported)."""
        return cls(
            config.num_kvcache_blocks,
            config.kvcache_block_size,
            window,
            config.max_num_batched_tokens,
            config.speculative_config is not None,
        )


@dataclass(frozen=True)
class Click:
    """What a click in a view asks for: ``kind`` "request" (pick ``ids[0]``; no ids: unpick),
    "blocks" (pick an owner of these blocks, a grid cell's) or "abort" (abort ``ids[0]``)."""

    kind: str
    ids: tuple[int, ...]


def _no_text(seq_id: int, start: int, end: int) -> str | None:
    return None


@dataclass
class DrawContext:
    step: int | None = None  # the step shown (None: nothing recorded yet)
    frame: Frame | None = None  # its frame
    snapshot: EngineSnapshot | None = None  # after that step, or the nearest earlier one kept
    totals: Frame | None = None  # the frame whose metrics to show (that step's or earlier)
    frames: tuple[Frame, ...] = ()  # the window: the last ``window`` frames up to ``step``
    selection: Selection = field(default_factory=Selection)
    last_step: int | None = None  # the newest step recorded (the live one)
    text: Callable[[int, int, int], str | None] = _no_text  # (seq id, start, end) -> its text
    earlier: Callable[[int], Iterable[Frame]] | None = None  # kept frames from a step, backwards
    # a cache source (nanovllm.bridge.source: VllmCacheSource, EngineCacheSource): the prefix
    # cache as its KV events show it, for the views of widgets.watch (no steps, no snapshots)
    cache: Any = None

    @classmethod
    def of_history(
        cls, history: History, selection: Selection, window: int, text=_no_text, now=None
    ) -> DrawContext:
        """The context of the step the selection shows (the latest unless time travelling);
        with no step kept, of ``now`` (a snapshot of the cache as it is, if given)."""
        selection.forget_pinned_before(history.first_step)
        step = selection.shown_step(history.last_step)
        if step is None:
            return cls(snapshot=now, selection=selection, text=text)
        return cls(
            step=step,
            frame=history.at(step),
            snapshot=history.snapshot_at(step),
            totals=history.nearest(step, "metrics"),
            frames=tuple(history.window(step, window)),
            selection=selection,
            last_step=history.last_step,
            text=text,
            earlier=lambda s: history.back_from(s, LOOK_BACK),
        )

    @property
    def live(self) -> bool:
        return self.selection.pinned is None

    @cached_property
    def step_time(self) -> float | None:
        """When the last step at or before the shown one that ran anything ended (an idle
        record's time is when its events were handed over, not a step's)."""
        ran = [f for f in self.frames if not is_idle(f.record)]
        if ran:
            return ran[-1].record.time
        return self.snapshot.time if self.snapshot is not None else None

    @cached_property
    def picked(self) -> PickedTable:
        """The picked request's block table (its last kept one, when it holds no blocks now)."""
        back = self.earlier(self.step) if self.earlier and self.step is not None else ()
        return picked_table(self.snapshot, self.selection.picked, back)

    @cached_property
    def prefix_tree(self) -> PrefixTree | None:
        """The snapshot's tree (with ref counts and eviction order); with no snapshot, the cache
        source's (a vLLM's: ref counts unknown)."""
        snap = self.snapshot
        if snap is not None and snap.block_hash is not None:
            return prefix_tree(snap)
        return self.cache.tree() if self.cache is not None else None

    @cached_property
    def request_rows(self) -> list[RequestRow] | None:
        """A row per sequence of the snapshot, newest first. Latencies are measured up to the
        last step shown, not to when the snapshot was taken: paused, nothing grows."""
        if self.snapshot is None:
            return None
        seqs = sorted(self.snapshot.sequences, key=lambda s: s.seq_id, reverse=True)
        return [request_row(s, self.step_time) for s in seqs]


class View:
    """Base of the dashboard's views: subclasses set the class attributes, ``build()`` their
    body (calling ``boxed(figure)`` for a live figure) and ``draw(ctx)``."""

    name: ClassVar[str]  # how freeze(), renew() and the page's reports name it
    attribute: ClassVar[str]  # the Workbench attribute that gives it (``wb.block_view``)
    column: ClassVar[str] = "wide"  # "left", "right" (a row beside the left column) or "wide"
    figure: Figure | None = None
    # the attributes where a view remembers what it drew, to skip equal redraws (None: nothing)
    memo: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def left_out(cls, setup: ViewSetup) -> str | None:
        """Why this view has nothing to show for what ``setup`` describes, and how to change
        that (the dashboard then leaves it out); None: it applies."""
        return None

    def __init__(self, setup: ViewSetup):
        self.setup = setup
        self.on_click: Callable[[Click], None] | None = None
        self.error: str | None = None  # the last draw's failure, shown above the view
        self._quiet = False
        self.failure = W.HTML("", layout=W.Layout(display="none"))
        self.failure.add_class("nanovllm-view-failure")
        self.widget = W.VBox([self.failure, self.build()])
        self.widget.add_class(f"nanovllm-view-{self.name}")

    def build(self) -> W.Widget:
        raise NotImplementedError

    def draw(self, ctx: DrawContext) -> None:
        raise NotImplementedError

    def draw_safely(self, ctx: DrawContext) -> str | None:
        """``draw``; a failure is shown in the view (the traceback on demand) and returned as a
        line for the status bar, and the other views go on. The failed draw may have left the
        figure half updated: the view forgets what it drew, so the next frame draws it anew."""
        try:
            self.draw(ctx)
        except Exception as e:  # a view's bug must not take the dashboard down
            for name in self.memo:
                setattr(self, name, None)
            self.error = f"{type(e).__name__}: {e}"
            details = escape("".join(traceback.format_exception(e)))
            self.failure.value = (
                "<details style='color:#b91c1c;font-size:12px'><summary>"
                f"this view failed to draw step {ctx.step}: {escape(self.error)} "
                f"(click for the traceback)</summary><pre>{details}</pre></details>"
            )
            self.failure.layout.display = "block"
            return self.error
        if self.error is not None:
            self.error, self.failure.value = None, ""
            self.failure.layout.display = "none"
        return None

    # ---- the live figure ------------------------------------------------------------------------
    def boxed(self, fig: Figure, empty: bool = False) -> W.Box:
        """Make ``fig`` this view's live figure, in the box the page finds it by; its layout as
        built is its size with data (``fit``), and ``empty``: it starts as its title line."""
        self.figure, self.box = fig, figure_box(self.name, fig)
        self._sized = (fig.layout.height, fig.layout.margin.b, fig.layout.showlegend)
        if empty:
            self.fit(True)
        self.wire()
        return self.box

    def fit(self, empty: bool, height: int | None = None, keep: tuple[str, ...] = ()) -> None:
        """Size the figure for what it has. With data: ``height`` px (as built by default), with
        its axes (but those named in ``keep``: the view shows them itself) and legend. Empty
        (nothing recorded yet, a reset, nothing picked): its title line alone, which says why,
        with no axes, legend or bottom margin, so an empty chart takes a line, not its full
        height of blank. Called in the view's ``batch_update``, where plotly drops an assignment
        that sets back the value from before the batch (the first one would stand): an axis the
        view shows by a rule of its own goes in ``keep``."""
        built, bottom, legend = self._sized
        fig = self.figure
        for ax in (*fig.select_xaxes(), *fig.select_yaxes()):
            if ax.plotly_name not in keep:
                ax.visible = not empty
        fig.layout.showlegend = False if empty else legend
        fig.layout.margin.b = 0 if empty else bottom
        # margins as set: one pushed out by a legend or colorbar drawn before would be scaled
        # down with the others to fit the small height, and the title moved out of its line
        fig.layout.margin.autoexpand = not empty
        fig.layout.height = fig.layout.margin.t + EMPTY_PLOT_PX if empty else height or built

    def wire(self) -> None:
        """Register the figure's click handlers (again after ``renew``); none by default."""

    def freeze(self, ctx: DrawContext) -> FrozenFigure:
        """A static copy of the figure as drawn now (see frozen.py)."""
        if self.figure is None:
            raise TypeError(f"the {self.name} view has no figure to freeze")
        return FrozenFigure.of(self.name, ctx.step, self.figure, ctx.snapshot)

    def renew(self) -> None:
        """A new figure widget with the same data and layout in the same box: for a figure
        whose page model lost its messages (pacing.py's blank check)."""
        old = self.figure
        self.figure = Figure(old)
        self.box.children = (self.figure,)
        old.close()
        self.wire()

    # ---- clicks ---------------------------------------------------------------------------------
    def emit(self, kind: str, *ids: int) -> None:
        if self.on_click is not None and not self._quiet:
            self.on_click(Click(kind, tuple(ids)))

    def quiet(self):
        """Change the view's own controls from code without emitting a click."""
        return by_code(self, "_quiet")


@contextmanager
def by_code(owner, flag: str):
    """``owner.<flag>`` is True inside the block (and as it was after): a widget changed by code,
    not by the user, so the handlers that turn a user's change into a click see the flag and do
    nothing (the views' ``quiet``, the controls' ``by_code``)."""
    was = getattr(owner, flag)
    setattr(owner, flag, True)
    try:
        yield
    finally:
        setattr(owner, flag, was)
