"""Form fields: every number box and button of the controls and the replay form, made one way.

``number("max tokens", 32, 1, 1_000_000, width=150)`` is a bounded int box (a float ``value``
makes a float box), its label sized to its text; ``button("Step", "step-forward", ...)`` a button
as wide as its label. Tests drive them as a browser does (``.value = ...``, ``.click()``).
"""

from __future__ import annotations

import ipywidgets as W

_LABEL = {"description_width": "initial"}  # the label as wide as its text, not a fixed 90 px


def number(
    description: str,
    value: float,
    lo: float,
    hi: float,
    *,
    width: int,
    step: float | None = None,
    tooltip: str = "",
) -> W.BoundedIntText | W.BoundedFloatText:
    kind = W.BoundedFloatText if isinstance(value, float) else W.BoundedIntText
    extra = {} if step is None else {"step": step}
    return kind(
        value=value,
        min=lo,
        max=hi,
        description=description,
        style=_LABEL,
        layout=W.Layout(width=f"{width}px"),
        tooltip=tooltip,
        **extra,
    )


def choice(description: str, options, value, *, width: int) -> W.Dropdown:
    return W.Dropdown(
        options=options,
        value=value,
        description=description,
        style=_LABEL,
        layout=W.Layout(width=f"{width}px"),
    )


def button(description: str, icon: str, tooltip: str = "", style: str = "") -> W.Button:
    return W.Button(
        description=description,
        icon=icon,
        tooltip=tooltip,
        button_style=style,
        layout=W.Layout(width="auto"),
    )


def row(*children: W.Widget, wrap: bool = True) -> W.HBox:
    """Controls side by side, centred, wrapping onto a second line when the page is narrow."""
    return W.HBox(
        list(children),
        layout=W.Layout(align_items="center", flex_flow="row wrap" if wrap else "row"),
    )
