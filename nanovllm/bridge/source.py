"""What the cache views draw, from a vLLM (its KV events) or from our engine, in one shape.

::

    VllmCacheSource("tcp://host:5557", model=path)      EngineCacheSource(llm)
      KvEventSubscriber -> poll() -> PrefixCacheModel     CacheEventDiffer after each step -> model
                   \\                                     /
        tree()           PrefixTree (observe/prefix_tree.py): the prefix-tree view
        occupancy()      Occupancy arrays: blocks in the cache, stored / removed so far, per batch
        evictions(n)     the last n Evictions, newest last: the eviction stream
        shared_prefixes(k), text(token_ids), metrics(), state, _repr_html_()
        keep_metrics(m) / metric_samples   metrics read over time (the occupancy view's usage)
        version          changes whenever the model applied a batch (redraw or not)

A view reads the same methods of either source. What differs is stated, not hidden:
``has_ref_counts`` (vLLM's events carry none: its tree's nodes have ``ref_count=None``, no block
ids, no eviction order) and ``can_step`` (step controls drive our engine only). ``poll()`` applies
what arrived since the last call; a view calls it before drawing, from the notebook's thread.
"""

from __future__ import annotations

import time
import weakref
from collections import deque
from dataclasses import replace
from html import escape
from typing import Any

from nanovllm.bridge.metrics import VllmMetrics
from nanovllm.bridge.subscriber import KvEventSubscriber, Restart
from nanovllm.engine.observe.cache_events import CacheEventDiffer, EventBatch
from nanovllm.engine.observe.cache_model import Eviction, Occupancy, PrefixCacheModel, SharedPrefix
from nanovllm.engine.observe.prefix_tree import PrefixTree, TreeNode, prefix_tree
from nanovllm.engine.observe.snapshot import take_snapshot


class CacheSource:
    """The reading half both sources share; ``model`` is the PrefixCacheModel they feed."""

    name = "cache"
    has_ref_counts = False
    can_step = False
    metrics_io = False  # reading metrics() may wait on the network: read it off the UI thread
    metrics_error: str | None = None  # why the last metrics() read failed
    state = None  # a subscriber's state (VllmCacheSource); None: no sockets involved

    def __init__(self, model: PrefixCacheModel, tokenizer: Any = None, history: int = 10_000):
        self.model = model
        self._tokenizer = tokenizer
        self._texts: dict[tuple[int, ...], str] = {}  # decoded blocks (a tree's hover asks often)
        self.metric_samples: deque[tuple[float, dict[str, Any]]] = deque(maxlen=history)

    def poll(self) -> int:
        return 0

    @property
    def version(self) -> int:
        return self.model.applied

    def tree(self) -> PrefixTree:
        return self.model.tree()

    def occupancy(self) -> Occupancy:
        return self.model.occupancy()

    def evictions(self, n: int = 50) -> list[Eviction]:
        return list(self.model.evictions)[-n:]

    def shared_prefixes(self, k: int = 5) -> list[SharedPrefix]:
        return self.model.longest_shared_prefixes(k)

    def text(self, token_ids) -> str | None:
        """The tokens as text (None without a tokenizer, or for unknown tokens)."""
        tok = self._tokenizer
        if isinstance(tok, str):  # a model path: load its tokenizer on first use
            from transformers import AutoTokenizer

            tok = self._tokenizer = AutoTokenizer.from_pretrained(tok)
        if tok is None or token_ids is None:
            return None
        key = tuple(token_ids)
        if key not in self._texts:
            if len(self._texts) > 50_000:
                self._texts.clear()
            self._texts[key] = tok.decode(list(key))
        return self._texts[key]

    def metrics(self) -> dict[str, Any] | None:
        return None

    def keep_metrics(self, metrics: dict[str, Any] | None, ts: float | None = None) -> None:
        """Keep a read of ``metrics()`` (None: it failed) with its time, for views over time."""
        if metrics is not None:
            self.metric_samples.append((time.time() if ts is None else ts, metrics))

    def status_rows(self) -> list[tuple[str, str]]:
        m = self.model
        return [
            ("blocks in the cache", f"{len(m.nodes)} (block size {m.block_size or '?'})"),
            ("stored / removed", f"{m.stored} / {m.removed}"),
            ("stored again (reuse)", str(m.restored)),
        ]

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td style='padding:1px 8px'>{escape(k)}</td><td><b>{escape(v)}</b></td></tr>"
            for k, v in self.status_rows()
        )
        trunks = "".join(
            f"<li>{p.num_blocks} blocks, {p.branches} branches: "
            f"<code>{escape(_clip(self.text(p.token_ids) or '?'))}</code></li>"
            for p in self.shared_prefixes(3)
        )
        extra = f"<div>longest shared prefixes:<ul>{trunks}</ul></div>" if trunks else ""
        return f"<div><b>{escape(self.name)}</b><table>{rows}</table>{extra}</div>"


class VllmCacheSource(CacheSource):
    """A vLLM's prefix cache from its KV events (and, given ``metrics``, its metrics)."""

    name = "vLLM KV events"

    def __init__(
        self,
        endpoint: str,
        replay_endpoint: str | None = None,
        *,
        model: Any = None,
        metrics: str | Any | None = None,
        topic: str = "",
        bind: bool = False,
        max_queue: int = 10_000,
        history: int = 10_000,
    ):
        super().__init__(PrefixCacheModel(history), model, history)
        self._metrics = None if metrics is None else VllmMetrics(metrics)
        self.metrics_io = isinstance(metrics, str)
        self.subscriber = KvEventSubscriber(
            endpoint, replay_endpoint, topic=topic, bind=bind, max_queue=max_queue
        )
        # a source dropped without close() still stops its thread and frees its sockets
        self._finalizer = weakref.finalize(self, self.subscriber.close)
        self.restarts_seen = 0

    def poll(self) -> int:
        items = self.subscriber.drain()
        for item in items:
            if isinstance(item, Restart):
                self.model.clear(item.ts)  # a new engine: its cache starts empty
                self.restarts_seen += 1
            else:
                self.model.apply(item)
        return len(items)

    @property
    def state(self):
        return self.subscriber.state

    def metrics(self) -> dict[str, Any] | None:
        return None if self._metrics is None else self._metrics.read()

    @property
    def metrics_error(self) -> str | None:
        return None if self._metrics is None else self._metrics.error

    def status_rows(self) -> list[tuple[str, str]]:
        s = self.state
        ago = f", last batch {time.time() - s.last_ts:.1f} s ago" if s.last_ts else ""
        rows = [
            ("status", f"{s.status} ({s.endpoint}){ago}"),
            ("batches / events", f"{s.batches} / {s.events}"),
            ("gaps: replayed / missed", f"{s.gaps}: {s.replayed} / {s.missed}"),
            ("dropped (consumer too slow)", f"{s.dropped} batches, {s.dropped_events} events"),
            ("malformed frames / bad events", f"{s.malformed} / {s.bad_events}"),
            ("publisher restarts", str(s.restarts)),
            *super().status_rows(),
            ("unknown removals (stored before we listened)", str(self.model.unknown_removed)),
        ]
        if s.last_error:
            rows.append(("last error", s.last_error))
        if not s.complete:
            rows.append(("note", "batches were lost: the tree may lack blocks or keep stale ones"))
        if self._metrics is not None and self._metrics.error:
            rows.append(("metrics", self._metrics.error))
        return rows

    def close(self) -> None:
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EngineCacheSource(CacheSource):
    """Our engine's prefix cache in the same shape: the events come from its snapshots after
    every step (no sockets); the tree is the snapshot's, with ref counts and eviction order."""

    name = "our engine"
    has_ref_counts = True
    can_step = True

    def __init__(self, engine, history: int = 10_000):
        super().__init__(PrefixCacheModel(history), engine.tokenizer, history)
        self.engine = engine
        self._differ = CacheEventDiffer()
        self._on_step(None)
        self._unsubscribe = engine.subscribe(self._on_step)

    def _on_step(self, record) -> None:
        events = self._differ.diff(self.engine)
        self.model.apply(EventBatch(time.time(), tuple(events), 0))

    def tree(self) -> PrefixTree:
        tree = prefix_tree(take_snapshot(self.engine))
        nodes = {h: _with_tokens(n, self.model.nodes.get(h)) for h, n in tree.nodes.items()}
        return PrefixTree(nodes, tree.children)

    def metrics(self) -> dict[str, Any] | None:
        return self.engine.get_metrics()

    def close(self) -> None:
        self._unsubscribe()


def _with_tokens(node: TreeNode, cached) -> TreeNode:
    if cached is None:  # the model follows the snapshot after each step; not yet: no tokens
        return node
    return replace(node, token_ids=cached.token_ids)


def _clip(s: str, n: int = 80) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
