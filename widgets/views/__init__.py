"""The dashboard's views: one file each, one interface (base.py), and this ordered registry.

Every entry is (module of this package, class): the dashboard builds the views in this order and
lays them out by each one's ``column`` (a "left" and "right" run side by side, a "wide" one gets a
row of its own); freeze, renew, drawing and click wiring iterate over them. A new view is a file
here and one line below.
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


def view_classes() -> tuple[type[View], ...]:
    """The registry's classes, in order."""
    return tuple(getattr(import_module(f"{__name__}.{m}"), cls) for m, cls in REGISTRY)


__all__ = ["REGISTRY", "view_classes", "View", "ViewSetup", "DrawContext", "Click"]
