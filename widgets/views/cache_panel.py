"""Cache panel: what a cache source knows besides its tree: the subscriber's state, rates, the
longest shared prefixes as text, and the engine's metrics (vLLM's, in our names).

::

    vLLM KV events                          metrics (read at 12:03:04)
    blocks in the cache   6 × 32 tokens     requests finished      7
    stored / removed      6 / 0             prefix cache hit rate  21.9%
    per s (last 5 s)      1.2 / 0.0         KV cache usage         0.0%
    batches / events      2 / 2             ...
    gaps, replayed, missed  0, 0, 0
    dropped, malformed, restarts  0, 0, 0
    longest shared prefixes: 2 blocks, 4 branches: "one two three four ..."

One ``ipywidgets.HTML``; ``draw(ctx)`` replaces its value (one message, none when unchanged).
Everything comes from the context's cache source: its model's counts and ``rates()``, its
subscriber's ``state`` (the status line above says the same in words), ``shared_prefixes()``,
``text()`` and its last kept metrics read (``metric_samples``: the watch reads them at its own
pace, never in a draw, so a slow /metrics URL cannot hold the kernel).
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

import ipywidgets as W

from .base import DrawContext, View

_TABLE = "border-collapse:collapse;font-family:monospace;font-size:12px;margin-right:14px"
_TD = "padding:1px 6px;border-bottom:1px solid #eee;white-space:nowrap"
TEXT_CHARS = 90

# (label, our metrics keys, format, scale)
METRICS = (
    ("requests finished", ("requests_finished",), "{:,.0f}", 1),
    ("prompt / generated tokens", ("prompt_tokens", "generated_tokens"), "{:,.0f} / {:,.0f}", 1),
    ("prefix-hit tokens", ("prefix_hit_tokens",), "{:,.0f}", 1),
    ("prefix cache hit rate", ("prefix_cache_hit_rate",), "{:.1%}", 1),
    ("KV cache usage", ("kv_cache_usage",), "{:.1%}", 1),
    ("running / waiting", ("num_running", "num_waiting"), "{:.0f} / {:.0f}", 1),
    ("preemptions", ("preemptions",), "{:,.0f}", 1),
    ("mean TTFT, ms", ("mean_ttft",), "{:.1f}", 1e3),
    ("mean end-to-end latency, ms", ("mean_e2e_latency",), "{:.1f}", 1e3),
    ("generated tok/s (wall clock)", ("generated_tokens_per_wall_s",), "{:,.1f}", 1),
)


def _table(rows: list[tuple[str, str]], title: str) -> str:
    body = "".join(
        f"<tr><td style='{_TD}'>{escape(k)}</td><td style='{_TD}'><b>{escape(v)}</b></td></tr>"
        for k, v in rows
    )
    return (
        f"<table style='{_TABLE}'><caption style='text-align:left'><b>{escape(title)}</b>"
        f"</caption>{body}</table>"
    )


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows of ``METRICS`` whose keys ``metrics`` has (our names)."""
    rows = []
    for label, keys, fmt, scale in METRICS:
        if all(metrics.get(k) is not None for k in keys):
            rows.append((label, fmt.format(*(float(metrics[k]) * scale for k in keys))))
    return rows


class CachePanel(View):
    name, attribute, column = "cache_panel", "cache_panel", "right"

    def build(self):
        self.html = ""
        self.panel = W.HTML(value=self.html, layout=W.Layout(width="100%"))
        return self.panel

    def draw(self, ctx: DrawContext) -> None:
        source = ctx.cache
        html = "<i>No cache source: widgets.watch(...) gives one.</i>"
        if source is not None:
            html = "<div style='display:flex;flex-wrap:wrap'>" + self._state(source)
            html += self._metrics(source) + "</div>" + self._prefixes(source)
        if html != self.html:
            self.html = self.panel.value = html

    @staticmethod
    def _state(source) -> str:
        m, s = source.model, source.state
        stored, removed = m.rates()
        rows = [
            ("blocks in the cache", f"{len(m.nodes):,} × {m.block_size or '?'} tokens"),
            ("stored / removed", f"{m.stored:,} / {m.removed:,}"),
            ("per s (last 5 s)", f"{stored:.1f} / {removed:.1f}"),
            ("stored again (reuse)", f"{m.restored:,}"),
        ]
        if m.unknown_removed:
            rows.append(("removed, never seen stored", f"{m.unknown_removed:,}"))
        if s is not None:
            rows += [
                ("batches / events", f"{s.batches:,} / {s.events:,}"),
                ("gaps, replayed, missed", f"{s.gaps}, {s.replayed}, {s.missed}"),
                ("dropped, malformed, restarts", f"{s.dropped}, {s.malformed}, {s.restarts}"),
            ]
        if source.metrics_error:
            rows.append(("metrics", _clip(source.metrics_error, 60)))
        return _table(rows, source.name)

    @staticmethod
    def _metrics(source) -> str:
        samples = source.metric_samples
        if not samples:
            return (
                "<div style='font-size:12px'>metrics: none read (pass metrics_url=... or "
                "llm=... to watch_vllm)</div>"
            )
        ts, metrics = samples[-1]
        clock = time.strftime("%H:%M:%S", time.localtime(ts))
        return _table(metric_rows(metrics), f"metrics (read at {clock})")

    @staticmethod
    def _prefixes(source) -> str:
        items = "".join(
            f"<li>{p.num_blocks} blocks, {p.branches} branches: "
            f"<code>{escape(_clip(source.text(p.token_ids) or '?'))}</code></li>"
            for p in source.shared_prefixes(3)
        )
        if not items:
            return ""
        return f"<div style='font-size:12px'>longest shared prefixes:<ul>{items}</ul></div>"


def _clip(s: str, n: int = TEXT_CHARS) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
