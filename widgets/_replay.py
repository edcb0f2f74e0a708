"""What-if replay, shown: the workbench's recorded workload on a second engine with other
settings, side by side with the recorded run.

::

    wb.workload (WorkloadRecorder, subscribed with the views)   wb.history (the recorded steps)
            |                                                          |
            v                                                          v
    replay(workload, model, **{**wb.config, **changes})      RunSummary.of(records since the
            |  (a fresh engine, closed when it returns)       first arrival)
            v                                                          v
    Comparison(recorded, replayed): table() | figure() (blocks in use and preemptions per step)

    ReplayPanel: blocks [..] block size [v] tokens/step [..] [x] prefix caching [Replay]
                 the table (HTML) and one FigureWidget, updated in place

The replay logic is nanovllm/replay.py; this module only runs it and draws. A
replay blocks the kernel while it runs (its engine steps here, not in the Run task) and refuses to
start while the recorded run has unfinished requests: the recorded side would be cut short.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

import ipywidgets as W
import plotly.graph_objects as go

from nanovllm.replay import Replay, RunSummary, replay

from ._layout import WIDE_FIGURE_WIDTH

if TYPE_CHECKING:
    from ._workbench import Workbench

ROWS = (  # (RunSummary field, label)
    ("steps", "steps"),
    ("preemptions", "preemptions"),
    ("prefill_tokens", "prefill tokens computed"),
    ("prefix_hit_tokens", "prefix-cache hit tokens"),
    ("decode_tokens", "decode tokens"),
    ("finished", "sequences finished"),
    ("step_time", "step time (s)"),
)
RUNS = (("recorded", "#3b82f6"), ("replay", "#f59e0b"))


@dataclass(frozen=True)
class Comparison:
    changes: dict[str, Any]  # the settings the replay changed
    recorded: RunSummary
    replayed: Replay
    complete: bool = True  # False: the history had dropped some of the recorded steps
    summaries: tuple[RunSummary, RunSummary] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "summaries", (self.recorded, self.replayed.summary))

    def table(self):
        """The two runs' totals as a pandas DataFrame (a row per figure, a column per run)."""
        import pandas as pd

        data = {
            name: [getattr(s, key) for key, _ in ROWS] for (name, _), s in zip(RUNS, self.summaries)
        }
        return pd.DataFrame(data, index=[label for _, label in ROWS])

    def html(self) -> str:
        def cell(v):
            return f"{v:.3f}" if isinstance(v, float) else f"{v:,}"

        head = "".join(f"<th style='color:{c}'>{n}</th>" for n, c in RUNS)
        rows = "".join(
            f"<tr><td>{label}</td>"
            + "".join(
                f"<td style='text-align:right'>{cell(getattr(s, key))}</td>" for s in self.summaries
            )
            + "</tr>"
            for key, label in ROWS
        )
        note = "" if self.complete else "<br><i>the history dropped early recorded steps</i>"
        return (
            f"<div><b>replay with {escape(_settings(self.changes))}</b> "
            f"({self.replayed.wall_time:.2f} s)<table><tr><th></th>{head}</tr>{rows}</table>"
            f"{note}</div>"
        )

    def traces(self) -> list[dict]:
        """Blocks in use and preemptions so far, per working step, for both runs."""
        out = []
        for (name, color), s in zip(RUNS, self.summaries):
            steps = list(range(len(s.series["kv_blocks_used"])))
            out.append(
                dict(
                    x=steps,
                    y=s.series["kv_blocks_used"],
                    name=f"{name}: blocks in use",
                    line=dict(color=color),
                    yaxis="y",
                )
            )
            out.append(
                dict(
                    x=steps,
                    y=s.series["preemptions"],
                    name=f"{name}: preemptions",
                    line=dict(color=color, dash="dot"),
                    yaxis="y2",
                )
            )
        return out

    def figure(self) -> go.Figure:
        fig = go.Figure(layout=_layout())
        for t in self.traces():
            fig.add_scatter(mode="lines", **t)
        return fig

    def _repr_html_(self) -> str:
        return self.html()


def _settings(changes: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in changes.items()) or "the same settings"


def _layout() -> go.Layout:
    return go.Layout(
        title=dict(text="recorded vs replay", font=dict(size=13), x=0.01, xanchor="left"),
        width=WIDE_FIGURE_WIDTH,
        height=280,
        margin=dict(l=50, r=50, t=40, b=40),
        xaxis=dict(title="working step"),
        yaxis=dict(title="KV blocks in use", rangemode="tozero"),
        yaxis2=dict(title="preemptions so far", overlaying="y", side="right", rangemode="tozero"),
        legend=dict(orientation="h", y=-0.25, font=dict(size=10)),
        plot_bgcolor="white",
    )


def compare(bench: Workbench, **changes: Any) -> Comparison:
    """Replay ``bench``'s recorded workload with ``changes`` to its engine config."""
    if bench.llm.has_unfinished():
        raise ValueError("the recorded run has unfinished requests: let it finish, then replay")
    workload, first = bench.workload.workload, bench.workload.first_step
    if not workload:
        raise ValueError("no workload recorded yet: add requests and run them first")
    frames = bench.history.frames
    records = [f.record for f in frames if f.step >= first]
    complete = bool(frames) and frames[0].step <= first
    again = replay(workload, bench.model, **{**bench.config, **changes})
    return Comparison(changes, RunSummary.of(records), again, complete)


class ReplayPanel:
    """The replay form, the table of both runs and one comparison figure."""

    def __init__(self, bench: Workbench):
        self.bench = bench
        cfg = bench.llm.config
        label = {"style": {"description_width": "initial"}}
        self.blocks = W.BoundedIntText(
            value=cfg.num_kvcache_blocks,
            min=1,
            max=10**7,
            description="blocks",
            layout=W.Layout(width="150px"),
            **label,
        )
        self.block_size = W.Dropdown(
            options=[16, 32, 64, 128, 256],
            value=cfg.kvcache_block_size,
            description="block size",
            layout=W.Layout(width="160px"),
            **label,
        )
        self.budget = W.BoundedIntText(
            value=cfg.max_num_batched_tokens,
            min=1,
            max=10**7,
            description="tokens/step",
            layout=W.Layout(width="170px"),
            tooltip="max_num_batched_tokens: a prompt over what is left "
            "of it is prefilled in chunks",
            **label,
        )
        self.prefix = W.Checkbox(
            value=cfg.enable_prefix_caching,
            description="prefix caching",
            indent=False,
            layout=W.Layout(width="auto"),
        )
        self.button = W.Button(description="Replay", icon="repeat", button_style="primary")
        self.table = W.HTML("<i>record a run (add requests, run them), then Replay</i>")
        self.figure = go.FigureWidget(layout=_layout())
        self.last: Comparison | None = None
        self.button.on_click(lambda _: self._on_click())
        form = [self.blocks, self.block_size, self.budget, self.prefix, self.button]
        self.widget = W.VBox(
            [W.HBox(form, layout=W.Layout(align_items="center")), self.table, self.figure]
        )

    def changes(self) -> dict[str, Any]:
        """The form's settings that differ from the recorded engine's."""
        cfg = self.bench.llm.config
        form = dict(
            num_kvcache_blocks=self.blocks.value,
            kvcache_block_size=self.block_size.value,
            max_num_batched_tokens=self.budget.value,
            enable_prefix_caching=self.prefix.value,
        )
        return {k: v for k, v in form.items() if getattr(cfg, k) != v}

    def run(self) -> Comparison:
        self.last = compare(self.bench, **self.changes())
        self.draw(self.last)
        return self.last

    def _on_click(self) -> None:
        self.button.disabled, self.button.description = True, "Replaying..."
        try:
            self.run()
        except Exception as e:  # shown, not raised: a click has no caller to raise to
            self.table.value = (
                f"<span style='color:#b91c1c'>{escape(f'{type(e).__name__}: {e}')}</span>"
            )
        finally:
            self.button.disabled, self.button.description = False, "Replay"

    def draw(self, comparison: Comparison) -> None:
        self.table.value = comparison.html()
        traces = comparison.traces()
        with self.figure.batch_update():
            if len(self.figure.data) != len(traces):
                self.figure.data = ()
                for t in traces:
                    self.figure.add_scatter(mode="lines", **t)
            else:
                for trace, t in zip(self.figure.data, traces):
                    trace.x, trace.y = t["x"], t["y"]
