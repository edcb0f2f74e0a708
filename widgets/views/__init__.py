"""The dashboards' views: one file each, one interface (base.py), and these ordered registries.

Every entry is (module of this package, class). ``REGISTRY`` is the workbench's dashboard (our
engine, step by step: dashboard.py); ``CACHE_REGISTRY`` is ``widgets.watch``'s (a prefix cache
seen through its KV-cache events, a vLLM's or ours: watcher.py), whose views draw from the
context's cache source alone. A dashboard builds its views in this order and lays them out by
each one's ``column`` (a "left" and "right" run side by side, a "wide" one gets a row of its
own); freeze, renew, drawing and click wiring iterate over them. A new view is a file here and
one line below.
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


__all__ = [
    "REGISTRY",
    "CACHE_REGISTRY",
    "view_classes",
    "View",
    "ViewSetup",
    "DrawContext",
    "Click",
]
