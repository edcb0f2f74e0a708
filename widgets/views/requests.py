"""Requests panel: a row per request (the newest ``MAX_ROWS``), with its text as it grows.

::

    12 requests: 3 running, 1 waiting, 8 finished (newest 10 shown)
    seq 11 · RUNNING                                                                   [x]
    TTFT 31.0 ms · 9.8 ms/token · prompt 7 · out 12 · computed 18 · cached 0
    'What is a block table?' → ' A block table maps logical blocks to …'
    seq 10 · FINISHED · length                                                         [x]
    TTFT 28.4 ms · 9.1 ms/token · prompt 7 · out 32 · cached 0

A narrow panel (292 px in a 940 px window) cuts a line's end, never what a row must show: the first
line is the seq id and its state (with a finished row's reason), the second starts with the two
latencies (``duration``: 7 characters at most each), so neither grows with the seq id; the counts
after them and the text may end in "…" (the line's tooltip holds it whole). A finished row has no
"computed" (its blocks are gone, and so is that count). Rows are the context's ``request_rows``
(latencies measured up to the last step shown: paused, they stay still); the texts come from its
text source (the prompt's first and the completion's last ``TEXT_TOKENS`` tokens). The header
counts the requests the engine still holds, and says how many more were added and collected
(``generate()`` and ``get_output`` read and forget them). The rows are one HTML table (one message
per redraw, none when nothing changed), beside a fixed pool of ``MAX_ROWS`` Abort buttons of the
same row height: whatever the number of requests, a redraw costs at most one message plus the
buttons whose state changed. A button's click asks to abort its row's request; it is disabled once
that request has finished.
"""

from __future__ import annotations

from collections import Counter
from html import escape

import ipywidgets as W

from nanovllm.engine.observe.request_rows import RequestRow

from .base import DrawContext, View

MAX_ROWS = 10
TEXT_TOKENS = 24  # tokens of text shown per row: the prompt's first, the completion's last
STATUS_COLORS = {
    "WAITING": "#64748b",
    "RUNNING": "#2563eb",
    "PREEMPTED": "#dc2626",
    "FINISHED": "#047857",
}
_LINE = "white-space:nowrap;overflow:hidden;text-overflow:ellipsis"
# An HTML widget's content is a flex item, which by default is never narrower than its longest
# line: without this a long row runs past the panel's edge, cut off with no "…".
_CSS = "<style>.nanovllm-requests .widget-html-content{min-width:0}</style>"
ROW_HEIGHT = "52px"  # a row of the table (three lines) and the Abort button beside it


class RequestSlot:
    """One row's Abort button, acting on request ``seq_id`` (the row drawn beside it)."""

    def __init__(self, on_abort):
        self.seq_id: int | None = None
        self.abort_button = W.Button(
            icon="stop", tooltip="abort this request", layout=W.Layout(width="34px")
        )
        self.abort_button.on_click(lambda _: self.seq_id is not None and on_abort(self.seq_id))
        self.widget = W.Box(
            [self.abort_button],
            layout=W.Layout(display="none", height=ROW_HEIGHT, align_items="center"),
        )

    def show(self, row: RequestRow | None) -> None:
        self.seq_id = None if row is None else row.seq_id
        display = "none" if row is None else "flex"
        if self.widget.layout.display != display:
            self.widget.layout.display = display
        if row is not None and self.abort_button.disabled != row.finished:
            self.abort_button.disabled = row.finished


class RequestsPanel(View):
    name, attribute, column = "requests", "requests_panel", "right"

    def build(self):
        self.rows: list[RequestRow] = []  # every request of the snapshot drawn, newest first
        self.header = W.HTML(value="<b>0 requests</b>")
        # clipped at its box: a long line must not run under the Abort buttons beside it
        self.table = W.HTML(
            value="", layout=W.Layout(flex="1 1 auto", min_width="0", overflow="hidden")
        )
        self.slots = [RequestSlot(lambda i: self.emit("abort", i)) for _ in range(MAX_ROWS)]
        buttons = W.VBox(
            [s.widget for s in self.slots], layout=W.Layout(flex="0 0 auto", margin="0 0 0 4px")
        )
        panel = W.VBox(
            [
                W.HTML(_CSS, layout=W.Layout(display="none")),
                self.header,
                W.HBox([self.table, buttons]),
            ],
            layout=W.Layout(width="100%"),
        )
        panel.add_class("nanovllm-requests")  # for the page's checks to find it
        return panel

    @property
    def shown(self) -> list[RequestRow]:
        """The rows drawn, top to bottom."""
        return self.rows[: len(self.slots)]

    def draw(self, ctx: DrawContext) -> None:
        if ctx.request_rows is None:
            return
        self.rows = ctx.request_rows
        added = (ctx.totals.metrics or {}).get("requests_added") if ctx.totals else None
        header = _header(self.rows, len(self.slots), added)
        if self.header.value != header:
            self.header.value = header
        shown = self.shown
        table = "".join(self._html(r, ctx.text) for r in shown)
        if self.table.value != table:
            self.table.value = table  # one message for every row that changed
        for k, slot in enumerate(self.slots):
            slot.show(shown[k] if k < len(shown) else None)

    def _html(self, r: RequestRow, text) -> str:
        color = STATUS_COLORS.get(r.status, "#111")
        state = r.status + (f" · {r.finish_reason}" if r.finish_reason else "")
        numbers = [f"TTFT {duration(r.ttft)}", f"{duration(r.inter_token)}/token"]
        numbers += [f"prompt {r.num_prompt_tokens}", f"out {r.num_completion_tokens}"]
        if not r.finished:  # a finished sequence's blocks are freed: its count is gone
            numbers.append(f"computed {r.num_computed_tokens}")
        numbers.append(f"cached {r.num_cached_tokens}")
        if r.num_preemptions:
            numbers.append(f"preempted {r.num_preemptions}x")
        numbers_line, words = " · ".join(numbers), self._text(r, text)
        return (
            "<div style='font-size:12px;line-height:16px;padding-top:1px;"
            f"height:{ROW_HEIGHT};overflow:hidden;border-bottom:1px solid #eee;"
            "box-sizing:border-box'>"
            f"<div style='{_LINE}'><b>seq {r.seq_id}</b> · "
            f"<span style='color:{color}'>{escape(state)}</span></div>"
            f"<div style='{_LINE};color:#374151' title='{escape(numbers_line)}'>"
            f"{escape(numbers_line)}</div>"
            f"<div style='{_LINE};color:#374151;font-family:monospace' title='{escape(words)}'>"
            f"{escape(words)}</div></div>"
        )  # a clipped line ends in "…"; hovering it shows the whole line

    @staticmethod
    def _text(r: RequestRow, text) -> str:
        p, n = r.num_prompt_tokens, r.num_prompt_tokens + r.num_completion_tokens
        prompt = text(r.seq_id, 0, min(p, TEXT_TOKENS))
        if prompt is None:
            return "(text no longer kept: the output was collected)"
        start = max(p, n - TEXT_TOKENS)
        completion = text(r.seq_id, start, n) or ""
        head = repr(prompt) + ("…" if p > TEXT_TOKENS else "")
        tail = ("…" if start > p else "") + repr(completion)
        return f"{head} → {tail}"


def _header(rows: list[RequestRow], max_rows: int, added: int | None) -> str:
    counts = Counter(r.status for r in rows)
    parts = ", ".join(f"{counts[s]} {s.lower()}" for s in STATUS_COLORS if counts[s])
    more = f" (newest {max_rows} shown)" if len(rows) > max_rows else ""
    n = len(rows)
    out = f"<b>{n} request{'' if n == 1 else 's'}</b>" + (f": {parts}" if parts else "") + more
    if added is not None and added > n:
        gone = added - n
        out += (
            f"<br><span style='color:#555;font-size:12px' title='generate() or get_output read "
            f"their output, and the engine forgot them'>+ {gone} finished and collected "
            f"({added} added in all)</span>"
        )
    return out


def duration(seconds: float | None) -> str:
    """A latency in 7 characters at most, so a row's first line keeps its width in a narrow panel:
    9.9 ms, 99.9 ms, 182 ms, 1.23 s, 12.3 s, 123 s. The unit is chosen after rounding (99.96 ms
    is "100 ms": it was "100.0 ms", one character more than its neighbours, and that row's
    ms/token was cut off)."""
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    if round(ms, 1) < 100:
        return f"{ms:.1f} ms"
    if round(ms) < 1000:
        return f"{ms:.0f} ms"
    if round(seconds, 2) < 10:
        return f"{seconds:.2f} s"
    return f"{seconds:.1f} s" if round(seconds, 1) < 100 else f"{seconds:,.0f} s"
