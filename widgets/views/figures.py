"""Figures: the one way a view makes a plotly figure, and the one plotly module they share.

::

    page                                         kernel
    PlotlyModule (one per kernel, hidden): ----  PlotlyModule(source = plotly's 4.9 MB bundle)
      initialize: import(bundle) once, kept
      on globalThis                              Figure(go.FigureWidget): _esm = FIGURE_ESM (2 kB)
    Figure (every view's): initialize returns
      at once, keeps early updates; once the
      module is there, plotly's own model and
      view take over (the updates replayed)

Why: anywidget gives each model 2 s to load its ``_esm`` and run ``initialize``, then drops every
message to it for good. plotly's ``_esm`` is its whole bundle, loaded and evaluated once per
figure: eight figures on a busy 2-core machine missed the 2 s and stayed blank. Here the bundle
is sent and evaluated once, and no figure waits for it inside its 2 s.

``figure(traces, ...)`` gives every view the same look (white plot, small title at the left, a
fixed width: a widget is drawn before it is attached, so plotly could not size it to its box);
``bars`` / ``lines`` / ``markers`` / ``state_heatmap`` are the empty traces views start from, and
``figure_box`` the box the page finds a figure by (``nanovllm-figure-<name>``).
"""

from __future__ import annotations

import pathlib

import anywidget
import ipywidgets as W
import numpy as np
import plotly
import plotly.graph_objects as go
import traitlets

FIGURE_WIDTH = 600  # the left column's figures
LEFT_COLUMN_WIDTH = f"{FIGURE_WIDTH + 8}px"
PANEL_MIN_WIDTH = "300px"  # the right column takes the rest of the row
WIDE_FIGURE_WIDTH = 920  # figures under both columns

_KEY = f"__nanovllm_plotly_{plotly.__version__}"  # one module per page and plotly version
_BUNDLE = pathlib.Path(plotly.__file__).parent / "package_data" / "widgetbundle.js"

_MODULE_ESM = f"""
export default {{
  initialize({{ model }}) {{
    if (globalThis["{_KEY}"]) return;
    const url = URL.createObjectURL(new Blob([model.get("source")], {{ type: "text/javascript" }}));
    // a turn later: the figures set up in the same burst finish their 2 s set-up first
    globalThis["{_KEY}"] = new Promise((go) => setTimeout(go, 0))
      .then(() => import(url))
      .finally(() => URL.revokeObjectURL(url));
  }},
}};
"""

FIGURE_ESM = f"""
const PY2JS = ["addTraces", "deleteTraces", "moveTraces", "restyle", "relayout", "update",
  "animate", "removeLayoutProps", "removeTraceProps"].map((m) => "_py2js_" + m);
const shared = () => new Promise((found) => {{
  const look = () => (globalThis["{_KEY}"] ? found(globalThis["{_KEY}"]) : setTimeout(look, 20));
  look();
}});
export default () => {{
  let plotlyWidget = null;
  let ready = null;
  return {{
    initialize(ctx) {{
      const {{ model }} = ctx;
      const early = [];  // updates sent before plotly's model code was there, in order
      const keep = PY2JS.map((name) => {{
        const kept = () => {{ const v = model.get(name); if (v !== null) early.push([name, v]); }};
        model.on("change:" + name, kept);
        return [name, kept];
      }});
      ready = shared().then((module) => {{
        keep.forEach(([name, kept]) => model.off("change:" + name, kept));
        plotlyWidget = module.default();
        plotlyWidget.initialize(ctx);
        for (const [name, v] of early) {{ model.set(name, v); model.set(name, null); }}
      }});
    }},
    render(ctx) {{
      let cleanup = null;
      let gone = false;
      ready.then(() => {{ if (!gone) cleanup = plotlyWidget.render(ctx); }});
      return () => {{ gone = true; if (cleanup) cleanup(); }};
    }},
  }};
}};
"""


class PlotlyModule(anywidget.AnyWidget):
    """Hidden: carries plotly's widget bundle to the page once (see the module docstring)."""

    _esm = traitlets.Unicode(_MODULE_ESM).tag(sync=True)
    source = traitlets.Unicode("").tag(sync=True)


_module: PlotlyModule | None = None


def plotly_module() -> PlotlyModule:
    """The kernel's one PlotlyModule (made with the first figure)."""
    global _module
    if _module is None:
        _module = PlotlyModule(source=_BUNDLE.read_text(encoding="utf-8"))
        _module.layout.display = "none"
    return _module


class Figure(go.FigureWidget):
    """A ``go.FigureWidget`` whose page side loads plotly from the shared ``PlotlyModule``."""

    _esm = FIGURE_ESM

    def __init__(self, *args, **kwargs):
        plotly_module()
        super().__init__(*args, **kwargs)


def figure(
    traces: list, *, title: str, height: int, margin: dict, width: int = FIGURE_WIDTH, **layout
) -> Figure:
    """A live figure with the dashboard's look (see the module docstring), as wide as the left
    column unless ``width`` says otherwise (``WIDE_FIGURE_WIDTH``: under both columns)."""
    return Figure(
        data=traces,
        layout=go.Layout(
            title=dict(text=title, font=dict(size=13), x=0.01, xanchor="left"),
            width=width,
            height=height,
            margin=margin,
            plot_bgcolor="white",
            **layout,
        ),
    )


def bars(name: str, color: str, hover: str, **style) -> go.Bar:
    return go.Bar(x=[], y=[], name=name, marker_color=color, hovertemplate=hover, **style)


def lines(name: str, **style) -> go.Scatter:
    return go.Scatter(x=[], y=[], mode="lines", name=name, **style)


def markers(name: str, mode: str = "markers", **style) -> go.Scatter:
    return go.Scatter(x=[], y=[], mode=mode, name=name, **style)


def state_heatmap(name: str, colors: tuple[str, ...], names: tuple[str, ...], **style):
    """A heatmap of integer state codes 0..n-1, each its colour, the state names on the bar."""
    n = len(colors)
    scale = []
    for i, c in enumerate(colors):
        scale += [[i / n, c], [(i + 1) / n, c]]
    return go.Heatmap(
        zmin=-0.5,
        zmax=n - 0.5,
        colorscale=scale,
        xgap=1,
        ygap=1,
        hoverongaps=False,
        name=name,
        colorbar=dict(
            tickvals=list(range(n)),
            ticktext=list(names),
            thickness=12,
            len=0.9,
            **style.pop("colorbar", {}),
        ),
        **style,
    )


def step_labels(steps) -> list[str]:
    """Steps as the labels of a category axis. Given numbers, plotly places them by value, so a
    step left out (an idle record) would leave a gap; given text, one after the other."""
    return [str(int(s)) for s in steps]


def figure_box(name: str, fig: go.FigureWidget) -> W.Box:
    """A box holding only ``fig``, marked for the page (pacing.py's blank check)."""
    box = W.Box([fig])
    box.add_class("nanovllm-figure")
    box.add_class(f"nanovllm-figure-{name}")
    return box


def json_grid(values: np.ndarray) -> list[list]:
    """A 2-D float array as nested lists, with ``None`` where it is NaN (or infinite).

    Plotly sends 1-D numeric arrays as binary buffers, but a 2-D array (a heatmap's ``z``) as
    nested lists through JSON, where NaN is not allowed (the kernel warns "Out of range float
    values are not JSON compliant" and rewrites the message). Empty cells are ``None``."""
    out = values.astype(object)
    out[~np.isfinite(values)] = None
    return out.tolist()
