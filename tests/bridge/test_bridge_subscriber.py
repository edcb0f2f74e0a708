"""Bad input never crashes the subscriber: each case ends in a clear state (bridge/subscriber.py).

A wrong endpoint, garbage frames, a gap in seq (filled from the replay socket, or counted as
missed without one), a late join, a slow consumer, the same publisher back after a dropped
connection (what was missed taken from its replay buffer), and a publisher killed mid-stream and
started again. The publishers are our ``ZmqEventPublisher`` (vLLM's wire), a raw PUB socket for
garbage, and for the kill a separate process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

zmq = pytest.importorskip("zmq")
msgspec = pytest.importorskip("msgspec")

from nanovllm.bridge.publisher import KvEventsConfig, ZmqEventPublisher  # noqa: E402
from nanovllm.bridge.subscriber import KvEventSubscriber, Restart  # noqa: E402
from nanovllm.bridge.wire import encode_batch  # noqa: E402
from nanovllm.engine.observe.cache_events import BlockRemoved, BlockStored, EventBatch  # noqa: E402
from nanovllm.errors import ConfigError  # noqa: E402
from nanovllm.testing.waiting import wait_for  # noqa: E402


def batch(i: int) -> EventBatch:
    return EventBatch(float(i), (BlockStored((i,), None, (i, i), 2, group_idx=0),), 0)


def publisher(tmp_path, replay=True, **config) -> ZmqEventPublisher:
    return ZmqEventPublisher(
        KvEventsConfig(
            enable_kv_cache_events=True,
            endpoint=f"ipc://{tmp_path}/pub",
            replay_endpoint=f"ipc://{tmp_path}/replay" if replay else None,
            **config,
        )
    )


def subscribe(tmp_path, replay=True, **kw) -> KvEventSubscriber:
    sub = KvEventSubscriber(
        f"ipc://{tmp_path}/pub", f"ipc://{tmp_path}/replay" if replay else None, **kw
    )
    assert wait_for(lambda: sub.state.status == "connected"), sub.state
    time.sleep(0.5)  # the subscription reaches the PUB socket a moment after the connection
    return sub


class DropSeqs:
    """Stands in for the PUB socket and loses the given seqs, as ZMQ does past its HWM."""

    def __init__(self, sock, lost: set[int]):
        self.sock, self.lost = sock, lost

    def send_multipart(self, frames):
        if int.from_bytes(frames[1], "big") not in self.lost:
            self.sock.send_multipart(frames)

    def close(self, linger=None):
        self.sock.close(linger=linger)


class Blip:
    """Stands in for the PUB socket: on ``down`` it closes the socket and binds a new one at the
    same endpoint, losing what it sends until a subscriber is back: a network blip, in the
    publisher's own thread (ZMQ sockets stay in one thread). The publisher, its seqs and its
    replay buffer live on."""

    def __init__(self, pub: ZmqEventPublisher, endpoint: str):
        self.pub, self.endpoint = pub, endpoint
        self.sock, self.down, self.lost = pub._pub, False, []

    def send_multipart(self, frames):
        if self.down:
            self.sock.close(linger=0)
            self.sock = self.pub._ctx.socket(zmq.PUB)
            self.sock.bind(self.endpoint)
            self.down = False
            self.lost.append(int.from_bytes(frames[1], "big"))
            return  # sent before anyone reconnected: lost
        self.sock.send_multipart(frames)

    def close(self, linger=None):
        self.sock.close(linger=linger)


def test_a_wrong_endpoint_is_a_state_and_a_malformed_one_an_error():
    with KvEventSubscriber("tcp://127.0.0.1:9") as sub:  # nothing listens on port 9
        time.sleep(0.5)
        assert sub.state.status == "connecting" and sub.drain() == []
        assert "no publisher has answered" in sub.state.summary()
    assert sub.state.status == "closed"
    for bad in ("tcp://nowhere", "carrier-pigeon://x", "tcp://127.0.0.1:99999"):
        with pytest.raises(ConfigError, match="cannot connect|port must be"):
            KvEventSubscriber(bad)


def test_garbage_frames_are_counted_and_good_batches_still_arrive(tmp_path):
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.bind(f"ipc://{tmp_path}/pub")
    with subscribe(tmp_path, replay=False) as sub:
        good = encode_batch(batch(0))
        half_bad = msgspec.msgpack.encode([1.0, [{"type": "Nope"}, ["BlockRemoved", [3], None]]])
        for frames in (
            [b"one frame"],
            [b"", b"\x00\x01", good],  # a 2-byte seq
            [b"", (0).to_bytes(8, "big"), b"\xc1\xc1"],  # not msgpack
            [b"", (1).to_bytes(8, "big"), msgspec.msgpack.encode("hello")],
            [b"", (2).to_bytes(8, "big"), good],
            [b"", (3).to_bytes(8, "big"), half_bad],
        ):
            pub.send_multipart(frames)
        assert wait_for(lambda: sub.state.last_seq == 3)
        items = sub.drain()
        s = sub.state
        assert [len(b.events) for b in items] == [1, 1]
        assert items[1].events == (BlockRemoved((3,), None),)
        assert (s.malformed, s.bad_events, s.batches, s.gaps, s.missed) == (4, 1, 2, 0, 0)
        assert "could not be decoded" in s.last_error and "4 malformed" in s.summary()
    pub.close(linger=0)


def test_a_gap_is_filled_from_the_replay_socket(tmp_path):
    pub = publisher(tmp_path)
    pub._pub = DropSeqs(pub._pub, lost={2, 3})
    with subscribe(tmp_path) as sub:
        for i in range(6):
            pub.publish(batch(i))
        assert wait_for(lambda: sub.state.last_seq == 5)
        items = sub.drain()
        assert [b.ts for b in items] == [0, 1, 2, 3, 4, 5]  # in seq order, the gap filled
        s = sub.state
        assert (s.gaps, s.replayed, s.missed, s.complete) == (1, 2, 0, True)
    pub.close()


def test_a_gap_without_replay_is_counted_as_missed(tmp_path):
    pub = publisher(tmp_path, replay=False)
    pub._pub = DropSeqs(pub._pub, lost={2, 3})
    with subscribe(tmp_path, replay=False) as sub:
        for i in range(6):
            pub.publish(batch(i))
        assert wait_for(lambda: sub.state.last_seq == 5)
        assert [b.ts for b in sub.drain()] == [0, 1, 4, 5]
        s = sub.state
        assert (s.gaps, s.replayed, s.missed, s.complete) == (1, 0, 2, False)
        assert "2 batches missed" in s.summary()
    pub.close()


def test_the_same_publisher_back_after_a_blip_gives_what_was_missed_from_replay(tmp_path):
    """The connection drops, the publisher lives on: on reconnecting the subscriber finds its last
    batch (same seq, same ts) in the replay buffer, so it is the same publisher, not a restart,
    and it takes the batches it missed from there, in order, before the live ones."""
    pub = publisher(tmp_path)
    pub._pub = blip = Blip(pub, f"ipc://{tmp_path}/pub")
    with subscribe(tmp_path) as sub:
        for i in range(3):
            pub.publish(batch(i))
        assert wait_for(lambda: sub.state.last_seq == 2)
        blip.down = True
        pub.publish(batch(3))  # the socket goes down with this one
        assert pub.flush()
        assert wait_for(lambda: sub.state.last_seq == 3, timeout=15), sub.state  # replayed
        assert blip.lost == [3]
        time.sleep(0.5)  # the subscription reaches the new PUB socket
        for i in (4, 5):
            pub.publish(batch(i))
        assert wait_for(lambda: sub.state.last_seq == 5), sub.state
        items = sub.drain()
        assert not any(isinstance(x, Restart) for x in items)
        assert [b.ts for b in items] == [0, 1, 2, 3, 4, 5]  # the missed one in its place
        s = sub.state
        assert (s.status, s.restarts, s.replayed, s.missed, s.complete) == (
            "connected",
            0,
            1,
            0,
            True,
        ), s
    pub.close()


def test_a_late_subscriber_catches_up_from_seq_0(tmp_path):
    pub = publisher(tmp_path)
    for i in range(5):
        pub.publish(batch(i))
    assert pub.flush()
    with subscribe(tmp_path) as sub:
        pub.publish(batch(5))
        assert wait_for(lambda: sub.state.last_seq == 5)
        assert [b.ts for b in sub.drain()] == [0, 1, 2, 3, 4, 5]
        assert sub.state.replayed == 5 and sub.state.complete
    pub.close()


def test_a_slow_consumer_drops_the_newest_and_says_how_many(tmp_path):
    pub = publisher(tmp_path)
    with subscribe(tmp_path, max_queue=3) as sub:
        for i in range(10):
            pub.publish(batch(i))
        assert wait_for(lambda: sub.state.last_seq == 9)
        s = sub.state
        assert (s.dropped, s.dropped_events, s.batches, s.complete) == (7, 7, 3, False)
        assert "dropped: the consumer was too slow" in s.summary()
        assert [b.ts for b in sub.drain()] == [0, 1, 2]
    pub.close()


PUBLISHER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from nanovllm.bridge.publisher import KvEventsConfig, ZmqEventPublisher
    from nanovllm.engine.observe.cache_events import BlockStored, EventBatch
    pub = ZmqEventPublisher(KvEventsConfig(enable_kv_cache_events=True, endpoint=sys.argv[1]))
    i = 0
    while True:
        pub.publish(EventBatch(time.time(), (BlockStored((i,), None, (1, 2), 2),), 0))
        i += 1
        time.sleep(0.02)
    """
)


def test_a_publisher_killed_mid_stream_then_restarted(tmp_path):
    endpoint = f"ipc://{tmp_path}/pub"

    def start():
        return subprocess.Popen([sys.executable, "-c", PUBLISHER_SCRIPT, endpoint])

    proc = start()
    try:
        with KvEventSubscriber(endpoint) as sub:
            assert wait_for(lambda: (sub.state.last_seq or 0) > 20, timeout=30), sub.state
            proc.kill()
            proc.wait()
            assert wait_for(lambda: sub.state.status == "disconnected"), sub.state
            before = sub.state.last_seq
            proc = start()  # a new engine: its seq starts again at 0
            assert wait_for(lambda: sub.state.restarts == 1, timeout=30), sub.state
            assert wait_for(lambda: sub.state.status == "connected")
            items = sub.drain()
            restarts = [x for x in items if isinstance(x, Restart)]
            assert len(restarts) == 1 and restarts[0].seq < before
            assert sub.state.malformed == 0
    finally:
        proc.kill()
        proc.wait()


def test_a_new_publisher_that_went_quiet_is_seen_from_its_replay_buffer(tmp_path):
    """A restart whose batches all went out before the subscriber reconnected: no live batch
    shows the seq going back, but the replay buffer no longer holds our last batch."""
    first = publisher(tmp_path)
    with subscribe(tmp_path) as sub:
        for i in range(3):
            first.publish(batch(i))
        assert wait_for(lambda: sub.state.last_seq == 2)
        first.close()
        assert wait_for(lambda: sub.state.status == "disconnected")
        second = publisher(tmp_path)
        for i in (10, 11):
            second.publish(batch(i))
        assert second.flush()
        assert wait_for(lambda: sub.state.restarts == 1 and sub.state.last_seq == 1)
        items = sub.drain()
        assert isinstance(items[3], Restart) and [b.ts for b in items[4:]] == [10, 11]
        assert [b.ts for b in items[:3]] == [0, 1, 2] and sub.state.duplicates >= 0
        second.close()
