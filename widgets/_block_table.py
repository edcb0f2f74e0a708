"""Block-table view: one request's block table, drawn as in the PagedAttention paper.

::

    request [seq 3 v]   seq 3 (RUNNING): 38 tokens in 3 blocks
                                                       physical
    logical block 0  [################]  ------------>  [ 2]   ref 1
    logical block 1  [################]  ---.   .---->  [ 7]   ref 2 (shared)
    logical block 2  [######          ]  ----\\-'       [12]
                      tokens used of block_size    '-> (ids in ascending order: the arrows cross
                                                        where the table is not contiguous)

Pick a request in the dropdown (or click one of its blocks in the grid, or its row in the
timeline: ``Workbench.pick``). Bars: a logical block's tokens (light) and, of those, the ones
already computed (dark), out of ``block_size``; hover shows the tokens' text, hash and parent
hash. Squares: the physical blocks, coloured by state (used / shared / cached), hover shows ref
count and every owner. The grid outlines the same blocks (``BlockView.highlight``).

It reads the ``EngineSnapshot`` it is given (``block_table.py`` turns it into entries) and the
text of the tokens from ``SequenceText``; a table longer than ``MAX_ROWS`` shows its first and last
blocks. The figure is updated only when the drawn entries change.
"""

from __future__ import annotations

from html import escape

import ipywidgets as W
import plotly.graph_objects as go

from nanovllm.engine.observe.block_table import (
    BlockTableEntry,
    block_table,
    find_sequence,
    short_hash,
)
from nanovllm.engine.observe.snapshot import BLOCK_STATE_COLORS, BLOCK_STATE_NAMES, EngineSnapshot

from ._layout import FIGURE_WIDTH, figure_box
from ._texts import SequenceText

MAX_ROWS = 24  # logical blocks drawn: the first and the last MAX_ROWS // 2 of a longer table
MAX_OPTIONS = 200  # requests offered in the dropdown (the newest), plus the picked one
PHYSICAL_X = 1.7  # where the physical blocks' column stands (the bars span 0..1)
NO_PICK = "(pick a request)"
TEXT_CHARS = 120  # a block's text in its hover, at most
BAR_NAMES = ("capacity", "tokens", "computed")
BAR_COLORS = (("#f3f4f6", "#9ca3af"), ("#bfdbfe", "#bfdbfe"), ("#2563eb", "#2563eb"))


class BlockTableView:
    def __init__(self, block_size: int, texts: SequenceText):
        self.block_size, self.texts = block_size, texts
        self.picked: int | None = None  # the request shown (a sequence id)
        self.entries: list[BlockTableEntry] = []  # the picked request's table, as last drawn
        self._drawn: tuple | None = None  # what the figure shows now (skip equal redraws)
        # index 0, not value None: a Dropdown whose value is None shows an empty box
        self.picker = W.Dropdown(
            options=[(NO_PICK, None)],
            index=0,
            description="request",
            layout=W.Layout(width="220px"),
        )
        self.summary = W.HTML(value="", layout=W.Layout(margin="0 0 0 8px"))
        self.figure = go.FigureWidget(
            data=[
                *(_bar(name, *colors) for name, colors in zip(BAR_NAMES, BAR_COLORS)),
                go.Scatter(
                    x=[],
                    y=[],
                    mode="lines",
                    line=dict(color="#6b7280", width=1),
                    hoverinfo="skip",
                    name="block table",
                ),
                go.Scatter(
                    x=[],
                    y=[],
                    mode="markers+text",
                    textposition="middle right",
                    textfont=dict(size=10),
                    name="physical",
                    hovertemplate="%{hovertext}<extra></extra>",
                    marker=dict(symbol="square", size=14, line=dict(width=1, color="#374151")),
                ),
            ],
            layout=go.Layout(
                title=dict(text="Block table", font=dict(size=13), x=0.01, xanchor="left"),
                width=FIGURE_WIDTH,
                height=220,
                margin=dict(l=90, r=10, t=60, b=20),
                barmode="overlay",
                bargap=0.25,
                plot_bgcolor="white",
                showlegend=False,
                xaxis=dict(
                    range=[-0.05, PHYSICAL_X + 0.45],
                    side="top",
                    showgrid=False,
                    zeroline=False,
                    tickvals=[0.5, PHYSICAL_X],
                    ticktext=[f"logical blocks: tokens of {block_size}", "physical blocks"],
                ),
                yaxis=dict(autorange="reversed", showgrid=False, zeroline=False),
            ),
        )
        self.figure_box = figure_box("block_table", self.figure)  # Dashboard.renew swaps it
        self.widget = W.VBox(
            [
                W.HBox([self.picker, self.summary], layout=W.Layout(align_items="center")),
                self.figure_box,
            ]
        )
        self.widget.add_class("nanovllm-block-table")  # for the browser test to find it

    # ---- the dropdown ---------------------------------------------------------------------------
    def sync_options(self, snap: EngineSnapshot) -> None:
        """Offer the snapshot's newest requests (and keep the picked one). Sends nothing when the
        set is unchanged; the caller holds ``Dashboard.by_code()``."""
        ids = sorted((s.seq_id for s in snap.sequences), reverse=True)[:MAX_OPTIONS]
        if self.picked is not None and self.picked not in ids:
            ids.append(self.picked)
        options = [(NO_PICK, None), *((f"seq {i}", i) for i in ids)]
        if list(self.picker.options) != options:
            self.picker.options = options
        if self.picked is None:
            if self.picker.index != 0:
                self.picker.index = 0
        elif self.picker.value != self.picked:
            self.picker.value = self.picked

    # ---- drawing --------------------------------------------------------------------------------
    def draw(self, snap: EngineSnapshot | None) -> list[int]:
        """Draw the picked request's table at the snapshot's moment; returns its physical blocks
        (for the grid's outline)."""
        seq = (
            find_sequence(snap, self.picked)
            if snap is not None and self.picked is not None
            else None
        )
        self.entries = block_table(snap, self.picked) if seq is not None else []
        if self.picked is None:
            title, summary = "Block table: pick a request", ""
        elif seq is None:
            title, summary = f"Block table of seq {self.picked}: not in this snapshot", ""
        else:
            title = f"Block table of seq {seq.seq_id} ({seq.status.lower()})"
            summary = (
                f"{seq.num_tokens} tokens ({seq.num_computed_tokens} computed, "
                f"{seq.num_cached_tokens} from the prefix cache) in {len(self.entries)} "
                + ("block" if len(self.entries) == 1 else "blocks")
                + (f"; finished: {seq.finish_reason}" if seq.finish_reason else "")
            )
        shown = _shown(self.entries)
        key = (self.picked, title, tuple(shown))
        if key != self._drawn:
            self._drawn = key
            self._draw(shown, title)
        html = f"<span style='font-size:12px'>{escape(summary)}</span>"
        if self.summary.value != html:
            self.summary.value = html
        return [e.physical for e in self.entries]

    def _draw(self, shown: list[BlockTableEntry | None], title: str) -> None:
        bs = self.block_size
        rows = list(range(len(shown)))
        real = [(y, e) for y, e in zip(rows, shown) if e is not None]
        labels = [
            f"logical {e.logical}" if e is not None else f"⋮ {len(self.entries) - MAX_ROWS} more"
            for e in shown
        ]
        rank = {j: k for k, j in enumerate(sorted({e.physical for _, e in real}))}
        scale = (len(shown) - 1) / max(1, len(rank) - 1)  # spread the squares over the rows
        py = {j: k * scale for j, k in rank.items()}
        lines_x, lines_y = [], []
        for y, e in real:
            lines_x += [1.02, PHYSICAL_X - 0.06, None]
            lines_y += [y, py[e.physical], None]
        physical = sorted(rank)
        first = {}
        for _, e in real:
            first.setdefault(e.physical, e)
        ys = [y for y, _ in real]
        with self.figure.batch_update():
            cap, used, done, arrows, phys = self.figure.data
            cap.x, cap.y = [1.0] * len(real), ys
            used.x, used.y = [e.fill / bs for _, e in real], ys
            done.x, done.y = [e.computed / bs for _, e in real], ys
            hover = [self._logical_hover(e) for _, e in real]
            for trace in (cap, used, done):
                trace.hovertext = hover
            arrows.x, arrows.y = lines_x, lines_y
            self.figure.layout.yaxis.tickvals = rows
            self.figure.layout.yaxis.ticktext = labels
            self.figure.layout.height = max(220, 90 + 20 * len(shown))
            self.figure.layout.title.text = title
        # a second update: in the browser, a property an update sets on some traces is reset on
        # the others (it would take the bars' colours), so the squares' colours go alone
        with self.figure.batch_update():
            phys.x = [PHYSICAL_X] * len(physical)
            phys.y = [py[j] for j in physical]
            phys.text = [str(j) for j in physical]
            phys.marker.color = [BLOCK_STATE_COLORS[first[j].state] for j in physical]
            phys.hovertext = [_physical_hover(first[j]) for j in physical]

    def _logical_hover(self, e: BlockTableEntry) -> str:
        text = self.texts.text(self.picked, e.first_token, e.first_token + e.fill)
        if text is None:
            text = "(tokens no longer kept: the output was collected)"
        elif len(text) > TEXT_CHARS:
            text = text[:TEXT_CHARS] + "…"
        last = e.first_token + e.fill - 1
        return "<br>".join(
            [
                f"logical block {e.logical} &rarr; physical block {e.physical}",
                f"tokens {e.first_token}..{last}: {e.fill}/{self.block_size} used, "
                f"{e.computed} computed",
                f"hash {short_hash(e.hash)}, parent {short_hash(e.parent_hash)}",
                "text: " + escape(repr(text)),
            ]
        )


def _physical_hover(e: BlockTableEntry) -> str:
    return "<br>".join(
        [
            f"physical block {e.physical}: <b>{BLOCK_STATE_NAMES[e.state]}</b>",
            f"ref count {e.ref_count}; owners: seq {', '.join(map(str, e.owners))}",
            f"hash {short_hash(e.hash)}, parent {short_hash(e.parent_hash)}",
        ]
    )


def _bar(name: str, fill: str, line: str) -> go.Bar:
    return go.Bar(
        x=[],
        y=[],
        orientation="h",
        name=name,
        marker=dict(color=fill, line=dict(color=line, width=1)),
        hovertemplate="%{hovertext}<extra></extra>",
    )


def _shown(entries: list[BlockTableEntry]) -> list[BlockTableEntry | None]:
    """All entries, or the first and last ``MAX_ROWS // 2`` with a gap (None) between."""
    if len(entries) <= MAX_ROWS:
        return list(entries)
    half = MAX_ROWS // 2
    return [*entries[:half], None, *entries[-half:]]


def owner_to_pick(snap: EngineSnapshot | None, block_id: int, current: int | None) -> int | None:
    """Which request a click on ``block_id`` picks: its first owner, or, when the picked request
    already owns it (a shared block), the next owner (None: a free or cached-free block)."""
    owners = snap.owners.get(block_id, ()) if snap is not None else ()
    if not owners:
        return None
    if current in owners:
        return owners[(owners.index(current) + 1) % len(owners)]
    return owners[0]
