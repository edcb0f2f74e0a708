"""Metrics panel: the figures of ``get_metrics()``, the shown step's record, integrity problems.

One ``ipywidgets.HTML``; ``draw(ctx)`` replaces its value (one message, none when unchanged).
Everything comes from the context's frames (StepRecord + snapshot + the metrics recorded with
them), so time travel shows the totals as they were (as of the nearest earlier step that kept
them). An idle record (an abort's events, handed over between two steps) shows as what it is.
"""

from __future__ import annotations

from html import escape
from typing import Any

import ipywidgets as W

from nanovllm.engine.observe.html import format_ids

from ..model.history import Frame
from ..model.states import is_idle, value_of
from .base import DrawContext, View

_TABLE = "border-collapse:collapse;font-family:monospace;font-size:12px;margin-right:14px"
_TD = "padding:1px 6px;border-bottom:1px solid #eee"
_VALUE = _TD + ";white-space:nowrap"  # a figure never wraps; its label may

# (label, metrics key, format)
TOTALS = (
    ("requests added", "requests_added", "{:d}"),
    ("finished", "requests_finished", "{:d}"),
    ("failed / aborted", ("requests_failed", "requests_aborted"), "{:d} / {:d}"),
    ("generated tokens", "generated_tokens", "{:,d}"),
    ("preemptions", "preemptions", "{:d}"),
    ("generated tok/s (of step time)", "generated_tokens_per_s", "{:,.1f}"),
    (
        "prefill / decode tok/s (all steps)",
        ("prefill_tokens_per_s", "decode_tokens_per_s"),
        "{:,.0f} / {:,.0f}",
    ),
    (
        "avg prefill / decode step ms",
        ("avg_prefill_step_time", "avg_decode_step_time"),
        "{:.2f} / {:.2f}",
    ),
    ("prefix cache hit rate", "prefix_cache_hit_rate", "{:.1%}"),
)


def _table(rows: list[tuple[str, str]], title: str) -> str:
    body = "".join(
        f"<tr><td style='{_TD}'>{escape(k)}</td><td style='{_VALUE}'><b>{v}</b></td></tr>"
        for k, v in rows
    )
    caption = f"<caption style='text-align:left'><b>{title}</b></caption>"
    return f"<table style='{_TABLE}'>{caption}{body}</table>"


def _fmt(metrics: dict[str, Any], key, fmt: str) -> str:
    keys = key if isinstance(key, tuple) else (key,)
    values = [metrics.get(k, 0) or 0 for k in keys]
    values = [v * 1e3 if k.startswith("avg_") else v for k, v in zip(keys, values, strict=True)]
    try:
        return escape(fmt.format(*values))
    except (ValueError, TypeError):
        return escape(" / ".join(map(str, values)))


class MetricsPanel(View):
    name, attribute, column = "metrics", "metrics_panel", "right"

    def build(self):
        self.html = self.empty_html()
        self.panel = W.HTML(value=self.html, layout=W.Layout(width="100%"))
        return self.panel

    @staticmethod
    def empty_html() -> str:
        return "<i>No steps yet: add a request and press Step or Run.</i>"

    def draw(self, ctx: DrawContext) -> None:
        """The shown step's record, with the metrics of ``ctx.totals`` (that step's or earlier)."""
        frame = ctx.frame
        if frame is None:
            html = self.empty_html()
        else:
            html = self._header(frame, ctx.live, ctx.last_step)
            html += "<div style='display:flex;flex-wrap:wrap'>" + _table(
                self._step_rows(frame), "this step"
            )
            totals = ctx.totals
            if totals is not None and totals.metrics is not None:
                title = (
                    "totals" if totals.step == frame.step else f"totals as of step {totals.step}"
                )
                html += _table(self._total_rows(totals.metrics), title)
            html += "</div>" + self._integrity(frame, ctx.selection.integrity) + self._events(frame)
        if html != self.html:
            self.html = self.panel.value = html

    @staticmethod
    def _header(frame: Frame, live: bool, last_step: int | None) -> str:
        where = "live" if live else f"time travel; latest is step {last_step}"
        if is_idle(frame.record):
            where += "; no step ran: only these events, handed over between two steps"
        err = (
            " <span style='color:#b91c1c'>FAILED, step abandoned (no request advanced): "
            f"{escape(frame.record.error)}</span>"
            if frame.record.error
            else ""
        )
        return f"<div><b>Step {frame.step}</b> ({escape(where)}){err}</div>"

    @staticmethod
    def _step_rows(frame: Frame) -> list[tuple[str, str]]:
        r = frame.record
        return [
            ("phase", escape(value_of(r.phase))),
            ("tokens prefill / decode", f"{r.num_prefill_tokens} / {r.num_decode_tokens}"),
            (
                "KV blocks used / free / cached",
                f"{r.kv_blocks_used} / {r.kv_blocks_free} / {r.kv_blocks_cached}",
            ),
            ("KV blocks in all", str(r.kv_blocks_total)),
            ("running / waiting", f"{r.num_running} / {r.num_waiting}"),
            ("admitted", format_ids(r.admitted_ids)),
            ("preempted", format_ids(r.preempted_ids)),
            ("finished", format_ids(r.finished_ids)),
            ("prefix-hit tokens", str(r.prefix_hit_tokens)),
            ("step ms", f"{r.timing.total * 1e3:.2f}"),
        ]

    @staticmethod
    def _total_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
        return [(label, _fmt(metrics, key, fmt)) for label, key, fmt in TOTALS]

    @staticmethod
    def _integrity(frame: Frame, enabled: bool) -> str:
        if not enabled:
            return "<div>integrity check: off</div>"
        problems = frame.snapshot.problems if frame.snapshot is not None else ()
        if not problems:
            return "<div>integrity check: <span style='color:#047857'><b>OK</b></span></div>"
        items = "".join(f"<li>{escape(p)}</li>" for p in problems)
        return (
            f"<div style='color:#b91c1c'><b>integrity check: {len(problems)} violation(s)</b>"
            f"<ul style='margin:0'>{items}</ul></div>"
        )

    @staticmethod
    def _events(frame: Frame) -> str:
        events = frame.record.events
        if not events:
            return ""
        shown = [
            f"seq {e.seq_id}: {value_of(e.before) if e.before else 'new'} → {value_of(e.after)} "
            f"({escape(e.reason)})"
            for e in events[:8]
        ]
        more = f" &hellip; and {len(events) - 8} more" if len(events) > 8 else ""
        return "<div style='font-size:12px'>events: " + "; ".join(shown) + more + "</div>"
