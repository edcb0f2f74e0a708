"""The watch's status line: what a cache source's subscriber is doing, in words, and what is wrong.

::

    ● connected to ipc:///tmp/.../kv-events: 12 batches, 40 events, the last 3 s ago
    ● connecting to tcp://10.0.0.5:5557: nothing has answered for 12 s (is vLLM running with ...)
    ● disconnected from tcp://...: the publisher went away 4 s ago; the views keep the cache as ...
      · gap: 2 jumps in seq, 5 batches replayed, 3 missed for good (the tree may lack blocks)
      · dropped: 7 batches (40 events): this notebook fell behind the publisher
      · malformed: 4 frames, 1 event could not be read (last: ...)
      · restarted: the publisher restarted 1 time (its cache starts empty: the tree was cleared)

``describe(source)`` returns the state's words (``connecting`` / ``connected`` /
``disconnected`` / ``closed``, then any of ``gap``, ``dropped``, ``malformed``, ``restarted``)
and the line as HTML: one colour per severity, the problems after the state. A source with no
subscriber (``EngineCacheSource``: our engine, in this kernel) says so.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from html import escape, unescape

GREEN, AMBER, RED, GREY = "#047857", "#b45309", "#b91c1c", "#6b7280"
HINT_AFTER = 2.0  # s of "connecting" before the line asks whether the endpoint is right


@dataclass(frozen=True)
class Status:
    words: tuple[str, ...]
    html: str

    @property
    def text(self) -> str:
        """The line without its markup."""
        return unescape(re.sub(r"<[^>]+>", "", self.html))


def describe(source, now: float | None = None) -> Status:
    now = time.time() if now is None else now
    s = source.state
    if s is None:
        head = _dot(GREEN, "watching") + escape(f" {source.name} in this kernel: its cache after")
        return Status(("watching",), head + " every step (no sockets)")
    words, parts = [s.status], [_head(s, now)]
    if s.gaps:
        words.append("gap")
        lost = " (the tree may lack blocks or keep stale ones)" if s.missed else ""
        parts.append(
            _flag(AMBER if not s.missed else RED, "gap")
            + escape(
                f": {_n(s.gaps, 'jump')} in seq, {_n(s.replayed, 'batch')} replayed, "
                f"{s.missed} missed for good{lost}"
            )
        )
    if s.dropped:
        words.append("dropped")
        parts.append(
            _flag(RED, "dropped")
            + escape(
                f": {_n(s.dropped, 'batch')} ({_n(s.dropped_events, 'event')}): this notebook "
                "fell behind the publisher (the tree may lack blocks)"
            )
        )
    if s.malformed or s.bad_events:
        words.append("malformed")
        last = f" (last: {s.last_error})" if s.last_error else ""
        parts.append(
            _flag(AMBER, "malformed")
            + escape(f": {_n(s.malformed, 'frame')}, {_n(s.bad_events, 'event')} unreadable{last}")
        )
    if s.restarts:
        words.append("restarted")
        parts.append(
            _flag(AMBER, "restarted")
            + escape(
                f": the publisher restarted {_n(s.restarts, 'time')} (a new engine's cache starts "
                "empty: the tree was cleared)"
            )
        )
    return Status(tuple(words), " · ".join(parts))


def _head(s, now: float) -> str:
    since = now - s.since
    if s.status == "connecting":
        hint = (
            f": nothing has answered for {since:.0f} s (is vLLM running with KV events on, "
            f"--kv-events-config, and is {s.endpoint} its endpoint?)"
            if since >= HINT_AFTER
            else ": waiting for the publisher"
        )
        return _dot(AMBER, "connecting") + escape(f" to {s.endpoint}{hint}")
    if s.status == "disconnected":
        return _dot(RED, "disconnected") + escape(
            f" from {s.endpoint}: the publisher went away {since:.0f} s ago; the views keep the "
            "cache as last seen, and the watch reconnects by itself"
        )
    if s.status == "closed":
        return _dot(GREY, "closed") + escape(f" ({s.endpoint}): the watch has stopped")
    ago = f", the last {now - s.last_ts:.0f} s ago" if s.last_ts else ""
    return _dot(GREEN, "connected") + escape(
        f" to {s.endpoint}: {_n(s.batches, 'batch')}, {_n(s.events, 'event')}{ago}"
    )


def _n(k: int, word: str) -> str:
    plural = "es" if word.endswith("ch") else "s"
    return f"{k:,} {word}" + ("" if k == 1 else plural)


def _dot(color: str, word: str) -> str:
    return f"<span style='color:{color}'>●</span> <b style='color:{color}'>{word}</b>"


def _flag(color: str, word: str) -> str:
    return f"<b style='color:{color}'>{word}</b>"
