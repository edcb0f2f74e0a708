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
  endpoint, is ``missed``. Joining a publisher mid-stream is such a gap, from seq 0;
- ``seq`` going back: the publisher restarted (a new engine, an empty cache): ``restarts`` +1 and
  a ``Restart`` marker in the queue, so the consumer clears its model;
- the consumer too slow: a full queue drops the newest batch (``dropped`` batches,
  ``dropped_events``); from then on the consumer's model may lack blocks, and ``state`` says so.

pyzmq is imported when a subscriber is made (the ``bridge`` extra), never by the engine.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, replace

from nanovllm.bridge.wire import END_OF_REPLAY, WireError, decode_batch, unpack_frames
from nanovllm.engine.observe.cache_events import EventBatch
from nanovllm.errors import ConfigError

REPLAY_TIMEOUT = 2.0  # seconds to wait for each message of a replay
POLL_INTERVAL = 0.05  # how often the thread checks for close()


@dataclass(frozen=True)
class Restart:
    """Queued when the publisher's seq went back: it restarted, with an empty cache."""

    seq: int
    ts: float


@dataclass(frozen=True)
class SubscriberState:
    endpoint: str
    replay_endpoint: str | None
    status: str = "connecting"  # connecting | connected | disconnected | closed
    since: float = 0.0  # time.time() of the last status change
    batches: int = 0  # batches queued (live and replayed)
    events: int = 0
    malformed: int = 0  # frames or payloads that are not a publication
    bad_events: int = 0  # events skipped inside batches that decoded
    last_error: str | None = None
    gaps: int = 0  # jumps in seq seen (a late join included)
    replayed: int = 0  # batches recovered from the replay endpoint
    missed: int = 0  # batches lost for good (not replayable)
    restarts: int = 0
    dropped: int = 0  # batches dropped because the queue was full
    dropped_events: int = 0
    last_seq: int | None = None
    last_ts: float | None = None  # the last batch's own timestamp

    @property
    def complete(self) -> bool:
        """Whether every batch since the (last) start reached the queue."""
        return not (self.missed or self.dropped)

    def summary(self) -> str:
        lost = []
        if self.missed:
            lost.append(f"{self.missed} batches missed (not replayable)")
        if self.dropped:
            lost.append(
                f"{self.dropped} batches ({self.dropped_events} events) dropped: "
                "the consumer was too slow"
            )
        if self.malformed or self.bad_events:
            lost.append(f"{self.malformed} malformed frames, {self.bad_events} bad events")
        head = (
            f"{self.status} to {self.endpoint}"
            if self.status != "connecting"
            else (f"connecting to {self.endpoint} (no publisher has answered)")
        )
        return "; ".join([head, f"{self.batches} batches, {self.events} events", *lost])


def check_endpoint(endpoint: str) -> None:
    """What ZMQ would take and then retry forever: a TCP port outside 1..65535."""
    if endpoint.startswith("tcp://"):
        port = endpoint.rpartition(":")[2]
        if port != "*" and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(
                f"endpoint {endpoint!r}: the port must be 1..65535; pass an endpoint "
                "like 'tcp://127.0.0.1:5557' or 'ipc:///tmp/kv-events'"
            )


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
        self._bind, self._catch_up = bind, catch_up
        self._state = SubscriberState(endpoint, replay_endpoint, since=time.time())
        self._lock = threading.Lock()
        self._expected: int | None = None  # the next seq, once one was seen
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        try:
            self._sub = self._socket(zmq.SUB, endpoint, bind)  # here, so a bad endpoint raises
        except ConfigError:
            self._ctx.term()
            raise
        self._sub.setsockopt(zmq.SUBSCRIBE, self._topic)
        self._monitor = self._sub.get_monitor_socket()
        self._replay = None
        self._thread = threading.Thread(target=self._run, name="kv-event-subscriber", daemon=True)
        self._thread.start()

    def _socket(self, kind, endpoint: str, bind: bool):
        check_endpoint(endpoint)
        sock = self._ctx.socket(kind)
        sock.setsockopt(self._zmq.LINGER, 0)
        try:
            (sock.bind if bind else sock.connect)(endpoint)
        except self._zmq.ZMQError as e:
            sock.close()
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
            for sock in (self._sub, self._monitor, self._replay):
                if sock is not None:
                    sock.close(linger=0)
            self._ctx.term()

    def _on_monitor(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        event = recv_monitor_message(self._monitor)["event"]
        zmq = self._zmq
        if event in (zmq.EVENT_CONNECTED, zmq.EVENT_ACCEPTED):
            self._update(status="connected")
        elif event == zmq.EVENT_DISCONNECTED:
            self._update(status="disconnected")

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
        elif seq < expected:
            self._count(restarts=1)
            self._put(Restart(seq, time.time()), 0)
            if seq > 0:
                self._fill(0, seq)
        elif seq > expected:
            self._fill(expected, seq)
        self._expected = seq + 1
        self._update(last_seq=seq)
        self._accept(payload)

    def _accept(self, payload: bytes) -> None:
        try:
            batch, bad = decode_batch(payload)
        except WireError as e:
            self._count(malformed=1)
            self._update(last_error=str(e))
            return
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

    def _fill(self, start: int, end: int) -> None:
        """Batches [start, end) from the replay endpoint; the rest counts as missed."""
        self._count(gaps=1)
        got = self._replay_range(start, end) if self.state.replay_endpoint else []
        for payload in got:
            self._accept(payload)
        self._count(replayed=len(got), missed=end - start - len(got))

    def _replay_range(self, start: int, end: int) -> list[bytes]:
        zmq = self._zmq
        if self._replay is None:
            try:
                self._replay = self._socket(zmq.DEALER, self.state.replay_endpoint, False)
            except ConfigError as e:
                self._update(last_error=str(e))
                return []
        self._replay.send_multipart([b"", start.to_bytes(8, "big")])
        got: dict[int, bytes] = {}
        while self._replay.poll(int(REPLAY_TIMEOUT * 1000)):
            frames = self._replay.recv_multipart()
            if len(frames) == 4 and frames[2] == END_OF_REPLAY:  # [b"", topic b"", END, b""]
                return [got[s] for s in sorted(got)]
            try:
                _, seq, payload = unpack_frames(frames[1:])
            except WireError as e:
                self._count(malformed=1)
                self._update(last_error=f"replay: {e}")
                continue
            if start <= seq < end:
                got[seq] = payload
        # no end marker in time: drop the socket, so a late answer cannot mix with the next one
        self._replay.close(linger=0)
        self._replay = None
        self._update(last_error=f"the replay endpoint did not answer in {REPLAY_TIMEOUT} s")
        return [got[s] for s in sorted(got)]
