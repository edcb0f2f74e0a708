"""Pixel widths of the dashboard's columns, given to every figure explicitly.

Plotly sizes a figure to its box only if the box is laid out when the figure is first drawn; a
widget view is drawn before it is attached, so plotly falls back to 700 px and a narrower column
cuts off the figure's right edge (the colorbars' labels). Fixed widths avoid that.

Each live figure sits alone in a ``figure_box``: the page finds a figure by its box's class
(``nanovllm-figure-<name>``), and the Dashboard swaps a new figure into the box (``renew``).
"""

import ipywidgets as W

FIGURE_WIDTH = 600  # the grid and the timeline (the left column)
LEFT_COLUMN_WIDTH = f"{FIGURE_WIDTH + 8}px"
PANEL_MIN_WIDTH = "300px"  # the metrics panel takes the rest of the row
WIDE_FIGURE_WIDTH = 920  # the timing view, under both columns


def figure_box(name: str, figure) -> W.Box:
    """A box holding only ``figure``, marked for the page (see _backpressure.py's blank check)."""
    box = W.Box([figure])
    box.add_class("nanovllm-figure")
    box.add_class(f"nanovllm-figure-{name}")
    return box
