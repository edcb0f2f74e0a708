"""The workbench beyond one engine: vLLM's KV-cache events and metrics, and ours in its schema.

    wire.py         vLLM's wire format: msgpack EventBatches (tagged maps and positional arrays)
    subscriber.py   KvEventSubscriber: ZMQ SUB (+ replay) -> a bounded queue, with a state to show
    publisher.py    our engine's events in vLLM's schema (``LLM(kv_events_config=...)``)
    source.py       VllmCacheSource / EngineCacheSource: what the cache views draw, from either
    metrics.py      vLLM's metrics (a /metrics URL or ``vllm.LLM.get_metrics()``) in our names
    launch.py       start a real vLLM in a subprocess, with KV events on (tests, notebook 09)

The model the events build (tree, occupancy, evictions) is ``nanovllm.engine.observe.cache_model``:
it needs no sockets. Everything here imports msgspec and pyzmq (the ``bridge`` extra) on first
use, so importing the engine never imports them.
"""
