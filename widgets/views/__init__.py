"""The dashboards' views: one file each, one interface (base.py), and these ordered registries.

Every entry is (module of this package, class). ``REGISTRY`` is the workbench's dashboard (our
engine, step by step: dashboard.py); ``CACHE_REGISTRY`` is ``widgets.watch``'s (a prefix cache
seen through its KV-cache events, a vLLM's or ours: watcher.py), whose views draw from the
context's cache source alone. A dashboard builds its views in this order and lays them out by
each one's ``column`` (a "left" and "right" run side by side, a "wide" one gets a row of its
own); freeze, renew, drawing (``draw_views``: a view that fails shows it, the others are drawn)
and click wiring iterate over them. A view that does not apply to the
engine or source (``View.left_out``: the speculation view of an engine that never drafts) is not
built, and asking for it says why. A new view is a file here and one line below.
"""

from __future__ import annotations

from importlib import import_module

from .base import Click, DrawContext, View, ViewSetup

REGISTRY = (
    ("blocks", "BlockView"),
    ("timeline", "TimelineView"),
    ("metrics", "MetricsPanel"),
    ("timing", "TimingView"),
    ("token_budget", "TokenBudgetView"),
    ("block_table", "BlockTableView"),
    ("requests", "RequestsPanel"),
    ("prefix_tree", "PrefixTreeView"),
    ("speculation", "SpeculationView"),
)

CACHE_REGISTRY = (
    ("controls_note", "ControlsNote"),  # who drives the engine: Step / Run / Pause are ours only
    ("prefix_tree", "PrefixTreeView"),  # the same class: a tree from a snapshot or from events
    ("occupancy", "OccupancyView"),
    ("cache_panel", "CachePanel"),
    ("evictions", "EvictionView"),
)


def view_classes(registry=REGISTRY) -> tuple[type[View], ...]:
    """The registry's classes, in order."""
    return tuple(getattr(import_module(f"{__name__}.{m}"), cls) for m, cls in registry)


def build_views(setup: ViewSetup, registry=REGISTRY) -> tuple[list[View], dict[type[View], str]]:
    """The registry's views that apply to ``setup``, built in order; and the classes left out
    (``View.left_out``), each with why."""
    views, left_out = [], {}
    for cls in view_classes(registry):
        why = cls.left_out(setup)
        if why is None:
            views.append(cls(setup))
        else:
            left_out[cls] = why
    return views, left_out


def draw_views(views: list[View], ctx: DrawContext) -> list[str]:
    """Draw every view from ``ctx``; a line per view that failed (``View.draw_safely`` shows the
    failure in the view, and the others are drawn all the same): the one place that guards them,
    for both dashboards."""
    return [f"the {v.name} view failed: {e}" for v in views if (e := v.draw_safely(ctx))]


__all__ = [
    "REGISTRY",
    "CACHE_REGISTRY",
    "view_classes",
    "build_views",
    "draw_views",
    "View",
    "ViewSetup",
    "DrawContext",
    "Click",
]
