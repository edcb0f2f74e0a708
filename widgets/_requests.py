"""Requests panel: a row per request (the newest ``MAX_ROWS``), with its text as it grows.

::

    12 requests: 3 running, 1 waiting, 8 finished (newest 10 shown)
    seq 11  RUNNING  prompt 7 · out 12 · computed 18 · cached 0 · TTFT 31 ms · 9.8 ms/token [Abort]
            'What is a block table?' → ' A block table maps logical blocks to …'
    seq 10  FINISHED (length) ...                                                        [Abort]

Rows come from the snapshot (``request_rows.py``); the texts from ``SequenceText`` (the prompt's
first and the completion's last ``TEXT_TOKENS`` tokens, so a redraw decodes little). The shown
rows are one HTML table (one message per redraw, none when nothing changed), beside a fixed pool
of ``MAX_ROWS`` Abort buttons of the same row height: whatever the number of requests, a redraw
costs at most one message plus the buttons whose state changed. Each button is wired (in
_wiring.py) to ``Workbench.abort`` of its row's request; it is disabled once that request has
finished.
"""

from __future__ import annotations

from collections import Counter
from html import escape

import ipywidgets as W

from nanovllm.engine.observe.request_rows import RequestRow, request_rows
from nanovllm.engine.observe.snapshot import EngineSnapshot

from ._texts import SequenceText

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
ROW_HEIGHT = "38px"  # a row of the table and the Abort button beside it


class RequestSlot:
    """One row's Abort button, acting on request ``seq_id`` (the row drawn beside it)."""

    def __init__(self):
        self.seq_id: int | None = None
        self.abort_button = W.Button(
            description="Abort",
            icon="stop",
            tooltip="abort this request",
            layout=W.Layout(width="auto"),
        )
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


class RequestsPanel:
    def __init__(self, texts: SequenceText, max_rows: int = MAX_ROWS):
        self.texts = texts
        self.rows: list[RequestRow] = []  # every request of the last snapshot drawn, newest first
        self.header = W.HTML(value="<b>0 requests</b>")
        # clipped at its box: a long line must not run under the Abort buttons beside it
        self.table = W.HTML(
            value="", layout=W.Layout(flex="1 1 auto", min_width="0", overflow="hidden")
        )
        self.slots = [RequestSlot() for _ in range(max_rows)]
        self.widget = W.VBox(
            [
                W.HTML(_CSS, layout=W.Layout(display="none")),
                self.header,
                W.HBox(
                    [
                        self.table,
                        W.VBox(
                            [s.widget for s in self.slots],
                            layout=W.Layout(flex="0 0 auto", margin="0 0 0 4px"),
                        ),
                    ]
                ),
            ],
            layout=W.Layout(width="100%"),
        )
        self.widget.add_class("nanovllm-requests")  # for the browser test to find it

    @property
    def shown(self) -> list[RequestRow]:
        """The rows drawn, top to bottom."""
        return self.rows[: len(self.slots)]

    def draw(self, snap: EngineSnapshot | None) -> None:
        if snap is None:
            return
        self.rows = request_rows(snap)
        counts = Counter(r.status for r in self.rows)
        parts = ", ".join(f"{counts[s]} {s.lower()}" for s in STATUS_COLORS if counts[s])
        more = f" (newest {len(self.slots)} shown)" if len(self.rows) > len(self.slots) else ""
        header = f"<b>{len(self.rows)} requests</b>" + (f": {parts}" if parts else "") + more
        if self.header.value != header:
            self.header.value = header
        shown = self.rows[: len(self.slots)]
        table = "".join(self._html(r) for r in shown)
        if self.table.value != table:
            self.table.value = table  # one message for every row that changed
        for k, slot in enumerate(self.slots):
            slot.show(shown[k] if k < len(shown) else None)

    def _html(self, r: RequestRow) -> str:
        color = STATUS_COLORS.get(r.status, "#111")
        state = r.status + (f" ({r.finish_reason})" if r.finish_reason else "")
        figures = [
            f"prompt {r.num_prompt_tokens}",
            f"out {r.num_completion_tokens}",
            f"computed {r.num_computed_tokens}",
            f"cached {r.num_cached_tokens}",
            f"TTFT {_ms(r.ttft)}",
            f"{_ms(r.inter_token)}/token",
        ]
        if r.num_preemptions:
            figures.append(f"preempted {r.num_preemptions}x")
        details, text = " · ".join(figures), self._text(r)
        line = f"seq {r.seq_id} {state} · {details}"
        return (
            "<div style='font-family:monospace;font-size:12px;line-height:17px;"
            f"height:{ROW_HEIGHT};overflow:hidden;border-bottom:1px solid #eee;"
            "box-sizing:border-box'>"
            f"<div style='{_LINE}' title='{escape(line)}'><b>seq {r.seq_id}</b> "
            f"<span style='color:{color}'>{escape(state)}</span> · {escape(details)}</div>"
            f"<div style='{_LINE};color:#374151' title='{escape(text)}'>{escape(text)}</div></div>"
        )  # a clipped line ends in "…"; hovering it shows the whole line

    def _text(self, r: RequestRow) -> str:
        p, n = r.num_prompt_tokens, r.num_prompt_tokens + r.num_completion_tokens
        prompt = self.texts.text(r.seq_id, 0, min(p, TEXT_TOKENS))
        if prompt is None:
            return "(text no longer kept: the output was collected)"
        start = max(p, n - TEXT_TOKENS)
        completion = self.texts.text(r.seq_id, start, n) or ""
        head = repr(prompt) + ("…" if p > TEXT_TOKENS else "")
        tail = ("…" if start > p else "") + repr(completion)
        return f"{head} → {tail}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f} ms"
