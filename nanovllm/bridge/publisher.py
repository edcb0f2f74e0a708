"""Our engine's prefix cache as vLLM's KV-cache events, on ZMQ, with vLLM's configuration keys.

    LLM(model, kv_events_config={"enable_kv_cache_events": True, "endpoint": "tcp://*:5557",
                                 "replay_endpoint": "tcp://*:5558"})

After every step an observer diffs the engine's snapshot (``CacheEventDiffer``) and publishes the
step's ``BlockStored`` / ``BlockRemoved`` events as one batch, so a tool written for vLLM's events
(llm-d's KV indexer, Dynamo's router, ``KvEventSubscriber``) can attach to our engine. The wire is
vLLM's: PUB frames ``[topic, seq, payload]`` (``wire.py``), a ROUTER at ``replay_endpoint`` that
answers a start seq with the buffered batches and an end marker. As in vLLM, an endpoint with
``*``, ``::``, ``ipc://`` or ``inproc://`` is bound, any other is connected to.

What differs from vLLM, on purpose: ``publish`` never blocks the engine (a full queue drops the
batch, counted in ``dropped``, and its seq is skipped, so subscribers see the gap), and the
extra key ``encoding="array"`` publishes the positional encoding older readers expect. The hashes
are our xxhash chain hashes: the same chain structure as vLLM's, other values.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, fields

from nanovllm.bridge.wire import ENCODINGS, END_OF_REPLAY, encode_batch, pack_frames
from nanovllm.engine.observe.cache_events import CacheEventDiffer, EventBatch
from nanovllm.errors import ConfigError


@dataclass(frozen=True)
class KvEventsConfig:
    """vLLM's ``KVEventsConfig`` keys (same names, same defaults), plus ``encoding``."""

    enable_kv_cache_events: bool = False
    publisher: str | None = None  # "zmq" or "null"; None: "zmq" when enabled
    endpoint: str = "tcp://*:5557"
    replay_endpoint: str | None = None
    buffer_steps: int = 10_000  # batches kept for replay
    hwm: int = 100_000  # the PUB socket's high-water mark (ZMQ drops beyond it)
    max_queue_size: int = 100_000  # batches waiting for the publisher thread
    topic: str = ""
    encoding: str = "map"  # "map" (vLLM's schema) or "array" (before vLLM PR #42892)

    def __post_init__(self) -> None:
        if self.publisher not in (None, "zmq", "null"):
            raise ConfigError(
                f"kv_events_config publisher={self.publisher!r}; pass 'zmq' or 'null'"
            )
        if self.encoding not in ENCODINGS:
            raise ConfigError(
                f"kv_events_config encoding={self.encoding!r}; pass one of {ENCODINGS}"
            )
        for name in ("buffer_steps", "hwm", "max_queue_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"kv_events_config {name}={getattr(self, name)} must be >= 1")

    @property
    def active(self) -> bool:
        return self.enable_kv_cache_events and (self.publisher or "zmq") == "zmq"

    @classmethod
    def from_dict(cls, d: dict | KvEventsConfig) -> KvEventsConfig:
        if isinstance(d, KvEventsConfig):
            return d
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"kv_events_config keys {unknown} are not known; use {known}")
        return cls(**d)


def binds(endpoint: str) -> bool:
    """vLLM's rule: wildcard hosts and ipc/inproc paths are bound, the rest connected to."""
    return "*" in endpoint or "::" in endpoint or endpoint.startswith(("ipc://", "inproc://"))


class ZmqEventPublisher:
    """PUB socket + replay ROUTER, served by one thread; ``publish`` only queues."""

    def __init__(self, config: KvEventsConfig):
        import zmq  # the bridge extra

        self.config = config
        self._zmq = zmq
        self._ctx = zmq.Context()
        self._pub = self._ctx.socket(zmq.PUB)
        self._pub.setsockopt(zmq.SNDHWM, config.hwm)
        self._replay = None
        try:
            self._open(self._pub, config.endpoint, binds(config.endpoint))
            if config.replay_endpoint:
                self._replay = self._ctx.socket(zmq.ROUTER)
                self._open(self._replay, config.replay_endpoint, True)
        except ConfigError:
            self._close_sockets()
            raise
        self._queue: queue.Queue[tuple[int, EventBatch] | None] = queue.Queue(config.max_queue_size)
        self._buffer: deque[tuple[int, bytes]] = deque(maxlen=config.buffer_steps)
        self._seq = itertools.count()
        self._topic = config.topic.encode()
        self.numbered = self.published = self.dropped = 0  # batches given a seq / sent / dropped
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="kv-event-publisher", daemon=True)
        self._thread.start()

    def _open(self, sock, endpoint: str, bind: bool) -> None:
        sock.setsockopt(self._zmq.LINGER, 0)
        try:
            (sock.bind if bind else sock.connect)(endpoint)
        except self._zmq.ZMQError as e:
            raise ConfigError(
                f"kv_events_config: cannot {'bind' if bind else 'connect'} {endpoint!r}: {e}; "
                "pick a free port, or 'ipc:///tmp/<name>'"
            ) from None

    def publish(self, batch: EventBatch) -> None:
        if self._closed:
            return
        seq = next(self._seq)
        self.numbered = seq + 1
        try:
            self._queue.put_nowait((seq, batch))
        except queue.Full:
            self.dropped += 1

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued batch is sent; False if ``timeout`` passed first."""
        end = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > end:
                return False
            time.sleep(0.002)
        return True

    def close(self) -> None:
        """Send what is queued, stop the thread, close the sockets (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _close_sockets(self) -> None:
        for sock in (self._pub, self._replay):
            if sock is not None:
                sock.close(linger=0)
        self._ctx.term()

    def _run(self) -> None:
        try:
            while True:
                if self._replay is not None and self._replay.poll(0):
                    self._serve_replay()
                try:
                    item = self._queue.get(timeout=0.05)
                except queue.Empty:
                    continue
                if item is None:
                    return
                seq, batch = item
                payload = encode_batch(batch, self.config.encoding)
                self._pub.send_multipart(pack_frames(self._topic, seq, payload))
                self._buffer.append((seq, payload))
                self.published += 1
                self._queue.task_done()
        finally:
            self._close_sockets()

    def _serve_replay(self) -> None:
        frames = self._replay.recv_multipart()
        if len(frames) != 3 or len(frames[2]) != 8:
            return  # not [client, b"", start seq]: nothing to answer
        client, start = frames[0], int.from_bytes(frames[2], "big")
        for seq, payload in list(self._buffer):
            if seq >= start:
                self._replay.send_multipart([client, b"", *pack_frames(self._topic, seq, payload)])
        self._replay.send_multipart([client, b"", b"", END_OF_REPLAY, b""])


class EngineEventPublisher:
    """Publishes ``engine``'s cache events after each of its steps; ``close()`` detaches."""

    def __init__(self, engine, config: KvEventsConfig):
        self.publisher = ZmqEventPublisher(config)
        self.differ = CacheEventDiffer()
        self._publish(engine)  # what is cached already
        self._unsubscribe = engine.subscribe(self._on_step(weakref.ref(engine)))
        self._finalizer = weakref.finalize(engine, self.publisher.close)

    def _on_step(self, engine_ref):
        def on_step(record) -> None:
            engine = engine_ref()
            if engine is not None:
                self._publish(engine)

        return on_step

    def _publish(self, engine) -> None:
        events = self.differ.diff(engine)
        if events:
            self.publisher.publish(EventBatch(time.time(), tuple(events), 0))

    def close(self) -> None:
        self._unsubscribe()
        self._finalizer()


def attach_publisher(
    engine, kv_events_config: dict | KvEventsConfig
) -> EngineEventPublisher | None:
    """Publish ``engine``'s KV events as configured (None when the config leaves them off)."""
    config = KvEventsConfig.from_dict(kv_events_config)
    return EngineEventPublisher(engine, config) if config.active else None
