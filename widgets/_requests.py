"""Requests panel: a row per request (the newest ``MAX_ROWS``), with its text as it grows.

::

    12 requests: 3 running, 1 waiting, 8 finished (newest 10 shown)
    seq 11  RUNNING  prompt 7 · out 12 · computed 18 · cached 0 · TTFT 31 ms · 9.8 ms/token [Abort]
            'What is a block table?' → ' A block table maps logical blocks to …'
    seq 10  FINISHED (length) ...                                                        [Abort]

Rows come from the snapshot (``request_rows.py``); the texts from ``SequenceText`` (the prompt's
first and the completion's last ``TEXT_TOKENS`` tokens, so a redraw decodes little). The panel
is a fixed pool of row widgets: a redraw sets only the rows whose HTML changed, so a widget
message goes out per changed row, never per request. Each row's Abort button is wired (in
_wiring.py) to ``Workbench.abort`` of the row's request; it is disabled once the request has
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


class RequestSlot:
    """One row of the pool: its HTML and its Abort button, showing request ``seq_id``."""

    def __init__(self):
        self.seq_id: int | None = None
        self.html = W.HTML(value="", layout=W.Layout(flex="1 1 auto", min_width="0"))
        self.abort_button = W.Button(
            description="Abort",
            icon="stop",
            tooltip="abort this request",
            layout=W.Layout(width="auto", flex="0 0 auto"),
        )
        self.widget = W.HBox(
            [self.html, self.abort_button],
            layout=W.Layout(display="none", align_items="center", border_bottom="1px solid #eee"),
        )

    def show(self, row: RequestRow | None, html: str = "") -> None:
        self.seq_id = None if row is None else row.seq_id
        display = "none" if row is None else "flex"
        if self.widget.layout.display != display:
            self.widget.layout.display = display
        if row is None:
            return
        if self.html.value != html:
            self.html.value = html
        if self.abort_button.disabled != row.finished:
            self.abort_button.disabled = row.finished


class RequestsPanel:
    def __init__(self, texts: SequenceText, max_rows: int = MAX_ROWS):
        self.texts = texts
        self.rows: list[RequestRow] = []  # every request of the last snapshot drawn, newest first
        self.header = W.HTML(value="<b>Requests</b>: none yet")
        self.slots = [RequestSlot() for _ in range(max_rows)]
        self.widget = W.VBox(
            [self.header, *(s.widget for s in self.slots)], layout=W.Layout(width="100%")
        )

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
        header = (
            f"<b>Requests</b>: {len(self.rows)}" + (f": {parts}" if parts else "") + escape(more)
        )
        if self.header.value != header:
            self.header.value = header
        for k, slot in enumerate(self.slots):
            row = self.rows[k] if k < len(self.rows) else None
            slot.show(row, self._html(row) if row is not None else "")

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
        return (
            f"<div style='font-family:monospace;font-size:12px'>"
            f"<div style='{_LINE}'><b>seq {r.seq_id}</b> "
            f"<span style='color:{color}'>{escape(state)}</span> · {' · '.join(figures)}</div>"
            f"<div style='{_LINE};color:#374151'>{escape(self._text(r))}</div></div>"
        )

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
