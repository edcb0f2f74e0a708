"""What-if replay, shown: the workbench's recorded workload on a second engine with other
settings, side by side with the recorded run.

::

    wb.workload (WorkloadRecorder, subscribed with the views)   wb.history (the recorded steps)
            |                                                          |
            v                                                          v
    replay(workload, model, **{**wb.config, **changes})      RunSummary.of(records since the
            |  (a fresh engine, closed when it returns)       first arrival)
            v                                                          v
    Comparison(recorded, replayed): table() | styled() | html() | figure() (blocks in use and
                                    preemptions per step)

    displayed: the table (with a note where the two runs cannot agree) and the figure

``table()`` is data: a DataFrame of the figures as counted (None where a run does not draft,
floats unrounded), for code to read. What a person reads is formatted, one way for both views:
``styled()`` (that DataFrame behind a pandas Styler, for ``display`` in a notebook) and ``html()``
(the form and ``display(comparison)``) show a dash for None, floats to 3 decimals, counts with
thousands separators, and the notes whole (a plain DataFrame's display cuts them at 50 characters).

The replay logic is nanovllm/replay.py; this module only runs it and draws (the
form, ``wb.replay_panel``, is controls/replay_form.py). A replay blocks the kernel while it runs
(its engine steps here, not in the Run task) and refuses to start while the recorded run has
unfinished requests: the recorded side would be cut short. Two rows differ for reasons of their
own, and the table says so: the step time is wall time on a machine doing other work too, and the
replay does not abort what the recorded run aborted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Any

import plotly.graph_objects as go

from nanovllm.replay import Replay, RunSummary, replay

from .model.states import value_of
from .views.figures import WIDE_FIGURE_WIDTH

ROWS = (  # (RunSummary field, label)
    ("steps", "steps"),
    ("preemptions", "preemptions"),
    ("prefill_tokens", "prefill tokens computed"),
    ("prefix_hit_tokens", "prefix-cache hit tokens"),
    ("decode_tokens", "decode tokens"),
    ("finished", "sequences finished"),
    ("step_time", "step time (s)"),
)
SPEC_ROWS = (  # when either run's engine drafts (speculative_config); a dash for one that does not
    ("draft_tokens", "draft tokens"),
    ("accepted_tokens", "accepted tokens"),
    ("acceptance_rate", "acceptance rate"),
    ("mean_acceptance_length", "mean acceptance length"),
)
SPEC_NOTES = {
    "decode tokens": "drafting also computes the draft tokens",
    "acceptance rate": "accepted / draft tokens",
    "mean acceptance length": "tokens a drafting decode appends per step",
}
RUNS = (("recorded", "#3b82f6"), ("replay", "#f59e0b"))


@dataclass(frozen=True)
class Comparison:
    changes: dict[str, Any]  # the settings the replay changed
    recorded: RunSummary
    replayed: Replay
    complete: bool = True  # False: the history had dropped some of the recorded steps
    aborted: int = 0  # sequences the recorded run aborted (the replay runs them to their end)
    summaries: tuple[RunSummary, RunSummary] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "summaries", (self.recorded, self.replayed.summary))

    @property
    def rows(self) -> tuple[tuple[str, str], ...]:
        """(RunSummary field, label) of the table: the speculation rows when either run drafts."""
        return ROWS + (SPEC_ROWS if any(s.speculative for s in self.summaries) else ())

    def notes(self) -> dict[str, str]:
        """Why a row may differ for reasons other than the settings (and what a speculation
        figure means), by row label."""
        out = {
            "step time (s)": "wall time of the steps: other work on the machine (the browser "
            "drawing, other programs) slows either run"
        }
        if self.aborted:
            out["sequences finished"] = (
                f"aborts are not replayed: the {self.aborted} sequence(s) aborted in the "
                "recorded run run to their end in the replay"
            )
        if any(s.speculative for s in self.summaries):
            out.update(SPEC_NOTES)
        return out

    def table(self):
        """The two runs' totals as a pandas DataFrame (a row per figure, a column per run, and
        a note where a row differs for another reason than the settings): the values as counted
        (None where a run does not draft), to read from code. To show it, ``styled()``."""
        import pandas as pd

        rows = self.rows
        data = {
            name: [getattr(s, key) for key, _ in rows] for (name, _), s in zip(RUNS, self.summaries)
        }
        notes = self.notes()
        data["note"] = [notes.get(label, "") for _, label in rows]
        return pd.DataFrame(data, index=[label for _, label in rows], dtype=object)

    def styled(self):
        """``table()`` as a notebook should show it (``display(comparison.styled())``): a pandas
        Styler over the same DataFrame (``.data``), its cells formatted as in ``html()`` and its
        notes whole; the DataFrame's values are not changed."""
        runs = [name for name, _ in RUNS]
        return (
            self.table()
            .style.format(cell, subset=runs)
            .format(escape="html", subset=["note"])
            .set_caption(f"replay with {escape(_settings(self.changes))}")
            .set_properties(subset=runs, **{"text-align": "right"})
            .set_properties(subset=["note"], **{"text-align": "left", "color": "#555"})
            .set_table_styles(  # the headings as html()'s: the runs' colours, "note" at the left
                {
                    **{name: [{"selector": "th", "props": f"color:{c}"}] for name, c in RUNS},
                    "note": [{"selector": "th", "props": "text-align:left"}],
                },
                overwrite=False,
            )
        )

    def html(self) -> str:
        notes = self.notes()
        head = "".join(f"<th style='color:{c}'>{n}</th>" for n, c in RUNS) + "<th>note</th>"
        rows = "".join(
            f"<tr><td>{label}</td>"
            + "".join(
                f"<td style='text-align:right'>{cell(getattr(s, key))}</td>" for s in self.summaries
            )
            + f"<td style='font-size:11px;color:#555'>{escape(notes.get(label, ''))}</td></tr>"
            for key, label in self.rows
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
        fig = go.Figure(layout=layout(self.most_preemptions))
        for t in self.traces():
            fig.add_scatter(mode="lines", **t)
        return fig

    @property
    def most_preemptions(self) -> int:
        return max(s.preemptions for s in self.summaries)

    def _ipython_display_(self) -> None:
        """The table and the figure (what the README promises)."""
        from IPython.display import HTML, display

        display(HTML(self.html()))
        display(self.figure())


def cell(v) -> str:
    """A figure as the tables show it: a dash for None (a run that does not draft), 3 decimals
    for a float, thousands separators for a count."""
    if v is None:
        return "—"
    return f"{v:.3f}" if isinstance(v, float) else f"{v:,}"


def _settings(changes: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in changes.items()) or "the same settings"


def layout(most_preemptions: int = 0) -> go.Layout:
    """The comparison figure's layout; the preemption axis counts in whole steps."""
    dtick = max(1, math.ceil(most_preemptions / 5))
    return go.Layout(
        title=dict(text="recorded vs replay", font=dict(size=13), x=0.01, xanchor="left"),
        width=WIDE_FIGURE_WIDTH,
        height=280,
        margin=dict(l=50, r=50, t=40, b=40),
        xaxis=dict(title="working step"),
        yaxis=dict(title="KV blocks in use", rangemode="tozero"),
        yaxis2=dict(
            title="preemptions so far",
            overlaying="y",
            side="right",
            rangemode="tozero",
            tick0=0,
            dtick=dtick,
            range=[0, max(1, most_preemptions) * 1.05],
        ),
        legend=dict(orientation="h", y=-0.25, font=dict(size=10)),
        plot_bgcolor="white",
    )


def compare(bench, **changes: Any) -> Comparison:
    """Replay ``bench``'s recorded workload with ``changes`` to its engine config (``bench``: a
    Workbench: its ``llm``, ``workload``, ``history``, ``model`` and ``config``)."""
    if bench.llm.has_unfinished():
        raise ValueError("the recorded run has unfinished requests: let it finish, then replay")
    workload, first = bench.workload.workload, bench.workload.first_step
    if not workload:
        raise ValueError("no workload recorded yet: add requests and run them first")
    frames = bench.history.frames
    records = [f.record for f in frames if f.step >= first]
    complete = bool(frames) and frames[0].step <= first
    aborted = sum(
        value_of(e.after) == "FINISHED" and e.reason == "abort" for r in records for e in r.events
    )
    again = replay(workload, bench.model, **{**bench.config, **changes})
    recorded = RunSummary.of(records, bench.llm.config.speculative_config is not None)
    return Comparison(changes, recorded, again, complete, aborted)
