"""Block-table view: one request's block table, drawn as in the PagedAttention paper.

::

    request [seq 3 v]   38 tokens (38 computed, 16 from the prefix cache) in 3 blocks
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
count and every owner. The grid outlines the same blocks while they are the request's.

With nothing picked, the chart is its title line and, below it, every request's block table at a
glance (``OVERVIEW_ROWS`` of the newest: its physical block ids in logical order, bold where
another request shares the block), so the column beside the tall requests list is not left blank;
once a request is picked, the overview is hidden and its table drawn.

It draws the context's ``picked`` table (model/selection.py): once the request holds no blocks
(finished, preempted, waiting), its last kept table with a line that says so, else why nothing is
drawn. Token text comes from the context's text source; a table longer than ``MAX_ROWS`` shows its
first and last blocks. The figure is updated only when the drawn entries change.
"""

from __future__ import annotations

from html import escape

import ipywidgets as W

from nanovllm.engine.observe.block_table import BlockTableEntry, short_hash
from nanovllm.engine.observe.snapshot import BLOCK_STATE_COLORS, BLOCK_STATE_NAMES, EngineSnapshot

from ..model.selection import PickedTable
from .base import DrawContext, View
from .figures import bars, figure, lines, markers

MAX_ROWS = 24  # logical blocks drawn: the first and the last MAX_ROWS // 2 of a longer table
MAX_OPTIONS = 200  # requests offered in the dropdown (the newest), plus the picked one
PHYSICAL_X = 1.7  # where the physical blocks' column stands (the bars span 0..1)
NO_PICK = "(pick a request)"
OVERVIEW_ROWS = 24  # requests listed at a glance while none is picked (the newest)
OVERVIEW_BLOCKS = 40  # block ids written per request line (a longer table ends in "…")
TEXT_CHARS = 120  # a block's text in its hover, at most
BAR_NAMES = ("capacity", "tokens", "computed")
BAR_COLORS = (("#f3f4f6", "#9ca3af"), ("#bfdbfe", "#bfdbfe"), ("#2563eb", "#2563eb"))


class BlockTableView(View):
    name, attribute, column = "block_table", "block_table_view", "left"
    memo = ("_drawn",)

    def build(self):
        self.entries: tuple[BlockTableEntry, ...] = ()  # the table drawn, for notebooks
        self._drawn: tuple | None = None  # what the figure shows now (skip equal redraws)
        # index 0, not value None: a Dropdown whose value is None shows an empty box
        self.picker = W.Dropdown(
            options=[(NO_PICK, None)],
            index=0,
            description="request",
            layout=W.Layout(width="220px"),
        )
        self.picker.observe(self._on_pick, "value")
        self.summary = W.HTML(value="", layout=W.Layout(margin="0 0 0 8px"))
        hover = "%{hovertext}<extra></extra>"
        traces = [
            bars(name, fill, hover, orientation="h", marker_line=dict(color=line, width=1))
            for name, (fill, line) in zip(BAR_NAMES, BAR_COLORS, strict=True)
        ]
        traces.append(lines("block table", line=dict(color="#6b7280", width=1), hoverinfo="skip"))
        traces.append(
            markers(
                "physical",
                mode="markers+text",
                textposition="middle right",
                textfont=dict(size=10),
                hovertemplate=hover,
                marker=dict(symbol="square", size=14, line=dict(width=1, color="#374151")),
            )
        )
        bs = self.setup.block_size
        box = self.boxed(
            figure(
                traces,
                title="Block table",
                height=220,
                margin=dict(l=90, r=10, t=60, b=20),
                barmode="overlay",
                bargap=0.25,
                showlegend=False,
                xaxis=dict(
                    range=[-0.05, PHYSICAL_X + 0.45],
                    side="top",
                    showgrid=False,
                    zeroline=False,
                    tickvals=[0.5, PHYSICAL_X],
                    ticktext=[f"logical blocks: tokens of {bs}", "physical blocks"],
                ),
                yaxis=dict(autorange="reversed", showgrid=False, zeroline=False),
            ),
            empty=True,
        )
        self.overview = W.HTML(value="", layout=W.Layout(display="none"))  # nothing picked
        return W.VBox(
            [
                W.HBox([self.picker, self.summary], layout=W.Layout(align_items="center")),
                box,
                self.overview,
            ]
        )

    def _on_pick(self, change) -> None:
        picked = change["new"]  # None: the dropdown's "(pick a request)", i.e. none
        self.emit("request", *(() if picked is None else (picked,)))

    # ---- the dropdown ---------------------------------------------------------------------------
    def _sync_options(self, snap: EngineSnapshot | None, picked: int | None) -> None:
        """Offer the snapshot's newest requests (and keep the picked one); sends nothing when
        unchanged."""
        ids = sorted((s.seq_id for s in snap.sequences), reverse=True)[:MAX_OPTIONS] if snap else []
        if picked is not None and picked not in ids:
            ids.append(picked)
        options = [(NO_PICK, None), *((f"seq {i}", i) for i in ids)]
        with self.quiet():
            if list(self.picker.options) != options:
                self.picker.options = options
            if picked is None:
                if self.picker.index != 0:
                    self.picker.index = 0
            elif self.picker.value != picked:
                self.picker.value = picked

    # ---- drawing --------------------------------------------------------------------------------
    def draw(self, ctx: DrawContext) -> None:
        t = ctx.picked
        self._sync_options(ctx.snapshot, t.seq_id)
        self.entries = t.entries
        title = _title(t)
        shown = _shown(list(t.entries))
        key = (t.seq_id, title, tuple(shown))
        if key != self._drawn:
            self._drawn = key
            self._draw(shown, title, len(t.entries), t.seq_id, ctx.text)
        html = f"<span style='font-size:12px'>{escape(_summary(t))}</span>"
        if self.summary.value != html:
            self.summary.value = html
        self._show_overview(None if t.seq_id is not None else _overview(ctx.snapshot))

    def _show_overview(self, html: str | None) -> None:
        """The block tables at a glance (None: hidden); sends nothing when unchanged."""
        display = "none" if html is None else "block"
        if html is not None and self.overview.value != html:
            self.overview.value = html
        if self.overview.layout.display != display:
            self.overview.layout.display = display

    def _draw(self, shown, title: str, total: int, seq_id, text) -> None:
        rows = list(range(len(shown)))
        real = [(y, e) for y, e in zip(rows, shown) if e is not None]
        labels = [
            f"logical {e.logical}" if e is not None else f"⋮ {total - MAX_ROWS} more" for e in shown
        ]
        rank = {j: k for k, j in enumerate(sorted({e.physical for _, e in real}))}
        scale = (len(shown) - 1) / max(1, len(rank) - 1)  # spread the squares over the rows
        py = {j: k * scale for j, k in rank.items()}
        arrows_x, arrows_y = [], []
        for y, e in real:
            arrows_x += [1.02, PHYSICAL_X - 0.06, None]
            arrows_y += [y, py[e.physical], None]
        first: dict[int, BlockTableEntry] = {}
        for _, e in real:
            first.setdefault(e.physical, e)
        physical, ys, bs = sorted(rank), [y for y, _ in real], self.setup.block_size
        with self.figure.batch_update():
            cap, used, done, arrows, _ = self.figure.data
            cap.x, cap.y = [1.0] * len(real), ys
            used.x, used.y = [e.fill / bs for _, e in real], ys
            done.x, done.y = [e.computed / bs for _, e in real], ys
            hover = [self._logical_hover(e, seq_id, text) for _, e in real]
            for trace in (cap, used, done):
                trace.hovertext = hover
            arrows.x, arrows.y = arrows_x, arrows_y
            self.figure.layout.yaxis.tickvals = rows
            self.figure.layout.yaxis.ticktext = labels
            self.fit(not shown, max(220, 90 + 20 * len(shown)))  # no table: the title says why
            self.figure.layout.title.text = title
        # a second update: in the browser, a property an update sets on some traces is reset on
        # the others (it would take the bars' colours), so the squares' colours go alone
        with self.figure.batch_update():
            phys = self.figure.data[4]
            phys.x = [PHYSICAL_X] * len(physical)
            phys.y = [py[j] for j in physical]
            phys.text = [str(j) for j in physical]
            phys.marker.color = [BLOCK_STATE_COLORS[first[j].state] for j in physical]
            phys.hovertext = [_physical_hover(first[j]) for j in physical]

    def _logical_hover(self, e: BlockTableEntry, seq_id: int, text) -> str:
        words = text(seq_id, e.first_token, e.first_token + e.fill)
        if words is None:
            words = "(tokens no longer kept: the output was collected)"
        elif len(words) > TEXT_CHARS:
            words = words[:TEXT_CHARS] + "…"
        last = e.first_token + e.fill - 1
        return "<br>".join(
            [
                f"logical block {e.logical} → physical block {e.physical}",
                f"tokens {e.first_token}..{last}: {e.fill}/{self.setup.block_size} used, "
                f"{e.computed} computed",
                f"hash {short_hash(e.hash)}, parent {short_hash(e.parent_hash)}",
                "text: " + escape(repr(words)),
            ]
        )


def _title(t: PickedTable) -> str:
    if t.seq_id is None:
        return "Block table: pick a request"
    if not t.entries:
        return f"Block table of seq {t.seq_id}: it holds no blocks"
    if t.as_of is not None:
        return f"Block table of seq {t.seq_id} as after step {t.as_of}, its last with blocks"
    return f"Block table of seq {t.seq_id} ({t.seq.status.lower()})"


def _summary(t: PickedTable) -> str:
    """The line beside the dropdown: the table's figures, or why it holds no blocks now."""
    seq = t.seq
    if not t.entries:
        return t.why
    n = len(t.entries)
    line = (
        f"{seq.num_tokens} tokens ({seq.num_computed_tokens} computed, "
        f"{seq.num_cached_tokens} from the prefix cache) in {n} block{'s' if n != 1 else ''}"
    )
    if t.as_of is not None:
        return f"then: {line}; now {t.why}"
    return line + (f"; finished: {seq.finish_reason}" if seq.finish_reason else "")


def _overview(snap: EngineSnapshot | None) -> str:
    """Every request's block table on a line (the newest ``OVERVIEW_ROWS``): physical block ids
    in logical order, bold where the block has more than one owner (a shared prefix)."""
    seqs = sorted(snap.sequences, key=lambda s: s.seq_id, reverse=True) if snap else []
    head = (
        "<div style='color:#374151'>A block table maps a request's logical blocks (its tokens, "
        f"{snap.block_size if snap else '?'} at a time) to physical blocks of the KV cache. "
        "Pick a request above to draw its table. At a glance, each request's physical blocks "
        "(<b>bold</b>: shared with another request):</div>"
    )
    if not seqs:
        return _OVERVIEW_BOX.format(head + "<div style='color:#6b7280'>no requests yet</div>")
    lines = [_overview_line(s, snap) for s in seqs[:OVERVIEW_ROWS]]
    if len(seqs) > OVERVIEW_ROWS:
        lines.append(f"<div style='color:#6b7280'>+ {len(seqs) - OVERVIEW_ROWS} older</div>")
    return _OVERVIEW_BOX.format(head + "".join(lines))


_OVERVIEW_BOX = "<div style='font-size:12px;line-height:18px;margin:4px 0 0 8px'>{}</div>"


def _overview_line(s, snap: EngineSnapshot) -> str:
    ids = s.block_table
    shown = [f"<b>{j}</b>" if snap.ref_count[j] > 1 else str(j) for j in ids[:OVERVIEW_BLOCKS]]
    blocks = " ".join(shown) + (" …" if len(ids) > OVERVIEW_BLOCKS else "")
    n = len(ids)
    what = f"{n} block{'s' if n != 1 else ''}: " + blocks if ids else "no blocks"
    return (
        "<div style='white-space:nowrap;overflow:hidden;text-overflow:ellipsis'>"
        f"<b>seq {s.seq_id}</b> · {s.status.lower()} · "
        f"<span style='font-family:monospace'>{what}</span></div>"
    )


def _physical_hover(e: BlockTableEntry) -> str:
    return "<br>".join(
        [
            f"physical block {e.physical}: <b>{BLOCK_STATE_NAMES[e.state]}</b>",
            f"ref count {e.ref_count}; owners: seq {', '.join(map(str, e.owners))}",
            f"hash {short_hash(e.hash)}, parent {short_hash(e.parent_hash)}",
        ]
    )


def _shown(entries: list[BlockTableEntry]) -> list[BlockTableEntry | None]:
    """All entries, or the first and last ``MAX_ROWS // 2`` with a gap (None) between."""
    if len(entries) <= MAX_ROWS:
        return list(entries)
    half = MAX_ROWS // 2
    return [*entries[:half], None, *entries[-half:]]
