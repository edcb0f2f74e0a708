"""KvEventSubscriber: vLLM's KV-cache events off ZMQ, into a bounded queue, with a state to show.

::

    vLLM (PUB) --[topic, seq, payload]--> SUB  \\
    vLLM (ROUTER, replay) <--start seq-- DEALER  >-- receiver thread --> queue (bounded) --> drain()
                          --batches, END-->     /     decode, order by seq, fill gaps

One background thread owns every socket (ZMQ sockets are not thread-safe); the notebook calls
``drain()`` at its own pace and gets the decoded batches in seq order. What can go wrong is
counted in ``state`` and never raised:

- no publisher at the endpoint: ``status`` stays "connecting" (ZMQ keeps retrying);
- the publisher dies: "disconnected" (from ZMQ's socket monitor) until it is back;
- a frame that is not a publication, or a payload that does not decode: ``malformed`` (+1 each,
  ``last_error`` says what); a batch with some bad events keeps the good ones (``bad_events``);
- a jump in ``seq`` (ZMQ dropped messages at its high-water mark): the missing batches are asked
  from the replay endpoint (``replayed``); what it no longer holds, or all of it without a replay
  endpoint, is ``missed``. Joining a publisher mid-stream is such a gap, from seq 0; on the first
  connection the subscriber also asks for everything buffered, so an idle engine's cache shows
  before its next batch;
- ``seq`` going back after a disconnect: the publisher restarted (a new engine, an empty cache):
  ``restarts`` +1 and a ``Restart`` marker in the queue, so the consumer clears its model. Without
  a disconnect, a lower seq is a batch a replay already gave (``duplicates``, skipped);
- the consumer too slow: a full queue drops the newest batch (``dropped`` batches,
  ``dropped_events``); from then on the consumer's model may lack blocks, and ``state`` says so.

pyzmq is imported when a subscriber is made (the ``bridge`` extra), never by the engine.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import replace

from nanovllm.bridge.replay import ReplayClient, check_endpoint
from nanovllm.bridge.state import Restart, SubscriberState
from nanovllm.bridge.wire import WireError, decode_batch, unpack_frames
from nanovllm.engine.observe.cache_events import EventBatch
from nanovllm.errors import ConfigError

POLL_INTERVAL = 0.05  # how often the thread checks for close()


class KvEventSubscriber:
    """Subscribe to a KV-events publisher (vLLM's, or ours). ``bind=True`` binds the SUB socket
    instead (for a publisher whose endpoint is ``tcp://host:port``, which vLLM connects to)."""

    def __init__(
        self,
        endpoint: str,
        replay_endpoint: str | None = None,
        *,
        topic: str = "",
        bind: bool = False,
        max_queue: int = 10_000,
        catch_up: bool = True,
    ):
        import zmq  # the bridge extra; failing here says so

        if max_queue < 1:
            raise ConfigError(f"max_queue={max_queue} must be >= 1")
        self._zmq = zmq
        self.queue: queue.Queue[EventBatch | Restart] = queue.Queue(max_queue)
        self._topic = topic.encode()
        self._catch_up = catch_up
        self._state = SubscriberState(endpoint, replay_endpoint, since=time.time())
        self._lock = threading.Lock()
        self._expected: int | None = None  # the next seq, once one was seen
        self._reconnected = False  # a disconnect since the last batch: a lower seq is a restart
        self._last_seen: tuple[int, float] | None = None  # (seq, ts) of the last batch decoded
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._sub = self._open_sub(endpoint, bind)  # here, so a bad endpoint raises
        try:
            self._replay = ReplayClient(self._ctx, replay_endpoint) if replay_endpoint else None
        except ConfigError:
            self._monitor.close()
            self._sub.close()
            self._ctx.term()
            raise
        self._thread = threading.Thread(target=self._run, name="kv-event-subscriber", daemon=True)
        self._thread.start()

    def _open_sub(self, endpoint: str, bind: bool):
        try:
            check_endpoint(endpoint)
        except ConfigError:
            self._ctx.term()
            raise
        sock = self._ctx.socket(self._zmq.SUB)
        sock.setsockopt(self._zmq.LINGER, 0)
        sock.setsockopt(self._zmq.SUBSCRIBE, self._topic)
        # the monitor first: a connection made before it exists would never be reported
        self._monitor = sock.get_monitor_socket()
        try:
            (sock.bind if bind else sock.connect)(endpoint)
        except self._zmq.ZMQError as e:
            self._monitor.close()
            sock.close()
            self._ctx.term()
            raise ConfigError(
                f"cannot {'bind' if bind else 'connect'} to {endpoint!r}: {e}; pass an endpoint "
                "like 'tcp://127.0.0.1:5557' or 'ipc:///tmp/kv-events'"
            ) from None
        return sock

    @property
    def state(self) -> SubscriberState:
        with self._lock:
            return self._state

    def _update(self, **changes) -> None:
        with self._lock:
            if "status" in changes and changes["status"] != self._state.status:
                changes["since"] = time.time()
            self._state = replace(self._state, **changes)

    def _count(self, **deltas) -> None:
        with self._lock:
            s = self._state
            self._state = replace(s, **{k: getattr(s, k) + v for k, v in deltas.items()})

    def drain(self, max_items: int | None = None) -> list[EventBatch | Restart]:
        """The batches (and restart markers) received since the last call, in order."""
        out = []
        while max_items is None or len(out) < max_items:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return out

    def close(self) -> None:
        """Stop the thread and close the sockets (idempotent)."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(timeout=5)
            self._update(status="closed")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the receiver thread ---------------------------------------------------------------------
    def _run(self) -> None:
        zmq = self._zmq
        poller = zmq.Poller()
        poller.register(self._sub, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(int(POLL_INTERVAL * 1000)))
                if self._monitor in ready:
                    self._on_monitor()
                if self._sub in ready:
                    for _ in range(1000):  # a burst at a time, then look at the monitor again
                        try:
                            frames = self._sub.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._on_frames(frames)
        finally:
            for sock in (self._sub, self._monitor):
                sock.close(linger=0)
            if self._replay is not None:
                self._replay.close()
            self._ctx.term()

    def _on_monitor(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        event = recv_monitor_message(self._monitor)["event"]
        zmq = self._zmq
        if event in (zmq.EVENT_CONNECTED, zmq.EVENT_ACCEPTED):
            self._update(status="connected")
            if self._replay is None:
                return
            if self._expected is None and self._catch_up:
                self._fill(0, None)  # what an idle publisher holds: shown before its next batch
            elif self._expected is not None and self._reconnected:
                self._resync()
        elif event == zmq.EVENT_DISCONNECTED:
            self._update(status="disconnected")
            self._reconnected = True

    def _on_frames(self, frames: list[bytes]) -> None:
        try:
            _, seq, payload = unpack_frames(frames)
        except WireError as e:
            self._count(malformed=1)
            self._update(last_error=str(e))
            return
        expected = self._expected
        if expected is None:  # the first batch: what came before it is a gap from 0
            if seq > 0 and self._catch_up:
                self._fill(0, seq)
        elif seq < expected and not self._reconnected:
            self._count(duplicates=1)  # a replay already gave it
            return
        elif seq < expected:  # the seq went back after a disconnect: a new publisher
            self._count(restarts=1)
            self._put(Restart(seq, time.time()), 0)
            if seq > 0:
                self._fill(0, seq)
        elif seq > expected:
            self._fill(expected, seq)
        self._reconnected = False
        self._expected = seq + 1
        self._update(last_seq=seq)
        self._accept(seq, payload)

    def _resync(self) -> None:
        """Back after a disconnect: the same publisher still buffers our last batch (same seq,
        same ts), and we take what we missed; a new one does not: a Restart, then all it holds."""
        got = self._replay_range(0, None)
        if got is None:
            return  # no answer: the next batch's seq decides
        last = self._last_seen
        if last is not None and any(seq == last[0] and _ts(p) == last[1] for seq, p in got):
            new = [(seq, p) for seq, p in got if seq >= self._expected]
        else:
            self._count(restarts=1)
            self._put(Restart(got[0][0] if got else 0, time.time()), 0)
            self._expected, new = (got[0][0] if got else None), got
        self._reconnected = False
        self._count(replayed=len(new))
        for seq, payload in new:
            self._expected = seq + 1
            self._update(last_seq=seq)
            self._accept(seq, payload)

    def _accept(self, seq: int, payload: bytes) -> None:
        try:
            batch, bad = decode_batch(payload)
        except WireError as e:
            self._count(malformed=1)
            self._update(last_error=str(e))
            return
        self._last_seen = (seq, batch.ts)
        if bad:
            self._count(bad_events=bad)
            self._update(last_error=f"{bad} event(s) of a batch could not be decoded")
        if self._put(batch, len(batch.events)):
            self._count(batches=1, events=len(batch.events))
            self._update(last_ts=batch.ts)

    def _put(self, item, num_events: int) -> bool:
        try:
            self.queue.put_nowait(item)
            return True
        except queue.Full:
            self._count(dropped=1, dropped_events=num_events)
            return False

    def _fill(self, start: int, end: int | None) -> None:
        """Batches [start, end) from the replay endpoint (``end`` None: all it holds from
        ``start``, when catching up); what it no longer holds, or all without one, is missed."""
        got = (self._replay_range(start, end) if self._replay is not None else None) or []
        gap = end is not None
        if end is None:  # catching up: a gap only if the buffer lost the beginning
            if not got:
                return
            end = got[-1][0] + 1
            gap = got[0][0] > start
            self._expected, self._reconnected = end, False
            self._update(last_seq=end - 1)
        self._count(gaps=int(gap), replayed=len(got), missed=end - start - len(got))
        for seq, payload in got:
            self._accept(seq, payload)

    def _replay_range(self, start: int, end: int | None) -> list[tuple[int, bytes]] | None:
        got = self._replay.fetch(start, end)
        if self._replay.malformed:
            self._count(malformed=self._replay.malformed)
        if self._replay.error:
            self._update(last_error=self._replay.error)
        return got


def _ts(payload: bytes) -> float | None:
    try:
        return decode_batch(payload)[0].ts
    except WireError:
        return None
