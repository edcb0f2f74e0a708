"""Frozen figures: a static copy of a view as drawn at one step, for cells that teach a moment.

A live view (``wb.block_view.figure``) shown twice is one figure in two places: when the engine
moves on, both redraw, and the moment the text describes is gone. ``wb.freeze("blocks")`` copies
the view as it is now into a plain ``go.Figure`` displayed as Plotly JSON (no widget, no kernel
connection): it stays as it was when the cell ran.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import plotly.graph_objects as go
import plotly.io as pio

from nanovllm.engine.observe.snapshot import EngineSnapshot


@dataclass(frozen=True)
class FrozenFigure:
    view: str  # the view's name ("blocks", "timeline", "timing", ...)
    step: int | None  # the step the view showed (None: before the first step)
    figure: go.Figure
    snapshot: EngineSnapshot | None  # the snapshot the views drew from at that step

    @classmethod
    def of(
        cls,
        view: str,
        step: int | None,
        live: go.FigureWidget,
        snapshot: EngineSnapshot | None = None,
    ) -> FrozenFigure:
        return cls(view, step, go.Figure(live), snapshot)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        # plotly's JSON encoder writes NaN as null: the bundle is valid JSON
        spec = json.loads(pio.to_json(self.figure, validate=False))
        return {"application/vnd.plotly.v1+json": spec, "text/plain": repr(self)}

    def __repr__(self) -> str:
        return f"FrozenFigure({self.view!r}, step={self.step})"
