"""``widgets.watch(...)`` and ``widgets.watch_vllm(...)``: the arguments a notebook gives, turned
into a cache source and a ``Watch`` (watcher.py), one per endpoint in a kernel.

    watch_vllm("tcp://host:5557", model=path, replay="tcp://host:5558", metrics_url=url)
        -> VllmCacheSource (nanovllm.bridge: the subscriber, its thread and sockets) -> Watch
    watch(llm)  -> EngineCacheSource(llm): our engine's cache after every step -> Watch
    watch(source)  any cache source the caller made (and closes)

Re-running the cell (the same endpoint, or the same engine) closes the watch that was there
first: its task, and its sockets and thread, so a bound endpoint is free again.
"""

from __future__ import annotations

from typing import Any

from nanovllm.bridge.source import CacheSource, EngineCacheSource, VllmCacheSource
from nanovllm.errors import ConfigError

from .watcher import Watch

# an endpoint (or our engine's id) -> the watch on it
_watches: dict[Any, Watch] = {}


def watch(source: CacheSource | Any, **options: Any) -> Watch:
    """Watch a cache source, or our ``LLM`` (its cache through the same events, after every
    step). ``options``: ``poll_interval``, ``redraw_interval``, ``metrics_interval``."""
    if isinstance(source, CacheSource):
        return Watch(source, **options)
    if hasattr(source, "block_manager") and hasattr(source, "subscribe"):
        _close(("engine", id(source)))
        w = _watches[("engine", id(source))] = Watch(
            EngineCacheSource(source), own_source=True, **options
        )
        return w
    raise ConfigError(
        f"watch({source!r}): pass a cache source (nanovllm.bridge.source) or a nanovllm LLM; "
        "for a vLLM use widgets.watch_vllm('tcp://host:5557', ...)"
    )


def watch_vllm(
    endpoint: str,
    *,
    model: str | None = None,
    replay: str | None = None,
    metrics_url: str | None = None,
    llm: Any = None,
    topic: str = "",
    bind: bool = False,
    max_queue: int = 10_000,
    **options: Any,
) -> Watch:
    """Watch a vLLM's prefix cache: its KV events at ``endpoint`` (``--kv-events-config``'s),
    ``replay`` its replay endpoint (to fill gaps), ``model`` the model path or tokenizer (each
    block's text), and its metrics from ``metrics_url`` (a server's /metrics) or ``llm`` (an
    in-process ``vllm.LLM``, built with ``disable_log_stats=False``). A malformed endpoint raises
    ``ConfigError``; one where nothing publishes is a state ("connecting"), shown."""
    if metrics_url is not None and llm is not None:
        raise ConfigError("pass metrics_url= (a /metrics URL) or llm= (a vllm.LLM), not both")
    _close(endpoint)  # the same cell again: free the endpoint first
    source = VllmCacheSource(
        endpoint,
        replay,
        model=model,
        metrics=metrics_url if metrics_url is not None else llm,
        topic=topic,
        bind=bind,
        max_queue=max_queue,
    )
    try:
        w = Watch(source, own_source=True, **options)
    except Exception:
        source.close()
        raise
    _watches[endpoint] = w
    return w


def _close(key) -> None:
    old = _watches.pop(key, None)
    if old is not None:
        old.close()
