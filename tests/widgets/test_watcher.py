"""The watch (widgets/watcher.py): a prefix cache through its KV events, in the cache views, with
the subscriber's state in a status line. Against our own publishers on real ZMQ sockets (no mock):
our engine's (``LLM(kv_events_config=...)``), a raw PUB socket speaking vLLM's wire (garbage and
gaps), and a publisher process killed mid-stream. Nothing they do raises out of the watch.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time

import pytest

zmq = pytest.importorskip("zmq")
pytest.importorskip("msgspec")

from cache_helpers import stored  # noqa: E402

import widgets  # noqa: E402
from nanovllm import LLM, SamplingParams  # noqa: E402
from nanovllm.bridge.wire import encode_batch, pack_frames  # noqa: E402
from nanovllm.engine.observe.cache_events import EventBatch  # noqa: E402
from nanovllm.engine.observe.prefix_tree import prefix_tree  # noqa: E402
from nanovllm.errors import ConfigError  # noqa: E402
from nanovllm.testing.waiting import wait_for as poll_until  # noqa: E402
from widgets.views.controls_note import NOTE as STEP_NOTE  # noqa: E402
from widgets.views.prefix_tree import UNKNOWN_COLOR  # noqa: E402

SYSTEM = list(range(100, 132))  # two blocks of 16
PARAMS = SamplingParams(temperature=0, max_tokens=20, ignore_eos=True)


def workload(llm) -> None:
    """A shared prompt with three questions, then an unrelated long prompt that evicts."""
    llm.generate([SYSTEM + [i, i + 1, i + 2] for i in range(3)], PARAMS, use_tqdm=False)
    llm.generate([[7, 8, 9] * 60], SamplingParams(max_tokens=4), use_tqdm=False)


def wait_for(cond, timeout=15.0) -> bool:
    return poll_until(cond, timeout, poll=0.02)


def batch(i: int) -> bytes:
    return encode_batch(EventBatch(float(i), (stored([i], None),), 0))


@pytest.fixture
def pub(tmp_path):
    """A raw PUB socket on an ipc path: our own publisher of vLLM's frames, good or bad."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.bind(f"ipc://{tmp_path}/raw")
    yield sock, f"ipc://{tmp_path}/raw"
    sock.close(linger=0)
    ctx.term()


def connected(w) -> None:
    assert wait_for(lambda: w.source.state.status == "connected"), w.status_text
    time.sleep(0.3)  # the subscription reaches the PUB socket a moment after the connection


def test_our_engine_through_its_events_in_the_same_views(tiny_model):
    with LLM(tiny_model, kvcache_block_size=16, num_kvcache_blocks=16, max_model_len=256) as llm:
        w = widgets.watch(llm)
        try:
            workload(llm)
            w.refresh()
            tree, snap_tree = w.prefix_tree_view.tree, prefix_tree(llm.snapshot())
            assert tree.nodes.keys() == snap_tree.nodes.keys() and sorted(tree.edges) == sorted(
                snap_tree.edges
            )
            assert all(n.ref_count == 0 for n in tree.nodes.values())  # ours: known, cached-free
            assert "cached-free" in w.prefix_tree_view.figure.layout.title.text
            model = w.source.model
            assert model.evicted > 0 and len(w.eviction_view.shown) == model.evicted
            assert int(w.occupancy_view.figure.data[0].y[-1]) == len(tree.nodes)
            assert "requests finished" in w.cache_panel.html  # our metrics, read inline
            assert (
                w.status_words == ("watching",) and w.controls_note.html.count(STEP_NOTE[True]) == 1
            )
            assert w.error is None
        finally:
            w.close()
        assert w.closed and "closed" in w.status.value


def test_watch_vllm_on_our_publisher_draws_what_our_snapshot_shows(tiny_model, tmp_path):
    events = {
        "enable_kv_cache_events": True,
        "endpoint": f"ipc://{tmp_path}/pub",
        "replay_endpoint": f"ipc://{tmp_path}/replay",
    }
    opts = dict(kvcache_block_size=16, num_kvcache_blocks=16, max_model_len=256)
    with LLM(tiny_model, kv_events_config=events, **opts) as llm:
        w = widgets.watch_vllm(
            events["endpoint"], replay=events["replay_endpoint"], model=tiny_model
        )
        try:
            connected(w)
            workload(llm)
            assert llm.kv_events.publisher.flush()
            assert w.settle() == ("connected",)
            view = w.prefix_tree_view
            assert view.tree.nodes.keys() == prefix_tree(llm.snapshot()).nodes.keys()
            assert set(view.figure.data[2].marker.color) == {UNKNOWN_COLOR}
            assert all(
                "no block id" in h and "tokens: " in h for h in view.figure.data[2].hovertext
            )
            assert w.source.model.evicted > 0 and len(w.eviction_view.figure.data[0].x) > 0
            assert STEP_NOTE[False] in w.controls_note.html  # Step / Run / Pause: ours only
            assert "metrics: none read" in w.cache_panel.html and w.error is None
        finally:
            w.close()
        assert w.status_words == ("closed",)


def test_a_wrong_endpoint_is_a_state_and_a_malformed_one_an_error():
    w = widgets.watch_vllm("tcp://127.0.0.1:9")  # nothing listens on port 9
    try:
        assert w.settle(timeout=0.5, quiet=0.3) == ("connecting",)
        assert w.status_text.startswith("● connecting to tcp://127.0.0.1:9")
        assert "no block stored" in w.prefix_tree_view.figure.layout.title.text
    finally:
        w.close()
    for bad in ("tcp://nowhere", "tcp://127.0.0.1:99999"):
        with pytest.raises(ConfigError, match="cannot connect|port must be"):
            widgets.watch_vllm(bad)
    with pytest.raises(ConfigError, match="not both"):
        widgets.watch_vllm("tcp://127.0.0.1:9", metrics_url="http://x/metrics", llm=object())


def test_garbage_frames_and_a_gap_are_states_and_good_batches_still_draw(pub):
    sock, endpoint = pub
    w = widgets.watch_vllm(endpoint)  # no replay endpoint: a gap is lost for good
    try:
        connected(w)
        sock.send_multipart(pack_frames(b"", 0, batch(0)))
        sock.send_multipart([b"one frame"])
        sock.send_multipart(pack_frames(b"", 1, b"\xc1 not msgpack"))
        sock.send_multipart(pack_frames(b"", 2, batch(2)))
        assert "malformed" in w.settle(quiet=0.5)
        sock.send_multipart(pack_frames(b"", 6, batch(6)))  # 3, 4 and 5 never come
        words = w.settle(quiet=0.5)
        assert words == ("connected", "gap", "malformed"), w.status_text
        text = w.status_text
        assert "3 missed for good" in text and "2 frames, 0 events unreadable" in text
        assert len(w.prefix_tree_view.tree.nodes) == 3  # blocks 0, 2 and 6 all drawn
        assert len(w.prefix_tree_view.figure.data[2].x) == 3 and w.error is None
        assert "gaps, replayed, missed" in w.cache_panel.html
    finally:
        w.close()


def test_a_slow_notebook_drops_batches_and_says_how_many(pub):
    sock, endpoint = pub
    w = widgets.watch_vllm(endpoint, max_queue=2)
    try:
        connected(w)
        for i in range(6):  # nobody polls meanwhile: the queue holds two
            sock.send_multipart(pack_frames(b"", i, batch(i)))
        assert wait_for(lambda: w.source.state.last_seq == 5)
        assert w.settle(quiet=0.3) == ("connected", "dropped")
        assert "dropped: 4 batches (4 events)" in w.status_text
        assert len(w.prefix_tree_view.tree.nodes) == 2
    finally:
        w.close()


PUBLISHER = textwrap.dedent(
    """
    import sys, time
    from nanovllm.bridge.publisher import KvEventsConfig, ZmqEventPublisher
    from nanovllm.engine.observe.cache_events import BlockStored, EventBatch
    pub = ZmqEventPublisher(KvEventsConfig(enable_kv_cache_events=True, endpoint=sys.argv[1]))
    for i in range(10**6):
        pub.publish(EventBatch(time.time(), (BlockStored((i + 1,), i or None, (1, 2), 2),), 0))
        time.sleep(0.02)
    """
)


def test_a_publisher_killed_mid_stream_leaves_the_cache_as_last_seen(tmp_path):
    endpoint = f"ipc://{tmp_path}/pub"
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, endpoint])
    w = widgets.watch_vllm(endpoint)
    try:
        assert wait_for(lambda: w.source.poll() >= 0 and len(w.source.model.nodes) > 10, 30)
        proc.kill()
        proc.wait()
        assert wait_for(lambda: w.source.state.status == "disconnected"), w.status_text
        w.refresh()
        assert w.status_words[0] == "disconnected" and "went away" in w.status_text
        held = len(w.source.model.nodes)
        assert len(w.prefix_tree_view.tree.nodes) == held > 10 and w.error is None
    finally:
        proc.kill()
        proc.wait()
        w.close()


def test_on_a_running_loop_the_watch_polls_and_draws_by_itself(pub):
    """In a kernel the task does it: no refresh() call, the loop never blocked."""
    sock, endpoint = pub

    async def scenario():
        w = widgets.watch_vllm(endpoint, poll_interval=0.05, redraw_interval=0.1)
        try:
            for _ in range(100):
                if w.source.state.status == "connected":
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            frames = w.frames
            for i in range(3):
                sock.send_multipart(pack_frames(b"", i, batch(i)))
            for _ in range(100):
                if len(w.prefix_tree_view.tree.nodes if w.prefix_tree_view.tree else ()) == 3:
                    break
                await asyncio.sleep(0.05)
            return w, frames
        finally:
            w.close()

    w, frames = asyncio.run(scenario())
    assert len(w.prefix_tree_view.tree.nodes) == 3 and w.frames > frames
    assert w._task.done()  # closed: the task ended


def test_the_same_endpoint_again_closes_the_old_watch(tmp_path):
    endpoint = f"ipc://{tmp_path}/bound"
    first = widgets.watch_vllm(endpoint, bind=True)  # binds: a second bind would fail
    second = widgets.watch_vllm(endpoint, bind=True)
    try:
        assert first.closed and first.status_words == ("closed",)
        assert not second.closed
    finally:
        second.close()


def test_metrics_from_a_url_are_read_off_the_loop_and_shown(tmp_path):
    """A /metrics URL is read in a thread: a server that answers is shown (the usage on the
    occupancy view, the rest in the panel); one that never answers holds no turn of the loop."""
    import socket

    from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

    registry = CollectorRegistry()
    Gauge("vllm:kv_cache_usage_perc", "KV cache usage", registry=registry).set(0.25)
    Counter("vllm:generation_tokens", "generated", registry=registry).inc(12)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    silent = socket.socket()  # listens, never answers: a read waits for its timeout
    silent.bind(("127.0.0.1", 0))
    silent.listen()

    async def watch(url, seconds):
        w = widgets.watch_vllm(f"ipc://{tmp_path}/{seconds}", metrics_url=url, metrics_interval=0.2)
        longest, last = 0.0, time.monotonic()
        try:
            for _ in range(int(seconds / 0.02)):
                await asyncio.sleep(0.02)
                now = time.monotonic()
                longest, last = max(longest, now - last), now
            return w, longest
        finally:
            w.close()

    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        w, _ = asyncio.run(watch(url, 1.0))
        assert w.source.metric_samples and w.source.metrics_error is None
        usage = w.occupancy_view.figure.data[3]
        assert set(usage.y) == {25.0} and w.occupancy_view.figure.layout.yaxis2.visible
        assert "<b>25.0%</b>" in w.cache_panel.html
        w, longest = asyncio.run(watch(f"http://127.0.0.1:{silent.getsockname()[1]}/m", 3.0))
        assert longest < 0.5, longest  # the 2 s read never held the loop
        assert not w.source.metric_samples and "timed out" in w.source.metrics_error
        assert "metrics" in w.cache_panel.html and "timed out" in w.cache_panel.html
    finally:
        server.shutdown()
        silent.close()


KERNEL_CELLS = [
    # a publisher process, and a watch on it: the kernel's loop polls and draws, no refresh()
    """import asyncio, json, subprocess, sys, zmq, widgets
from nanovllm.bridge.wire import pack_frames
say = lambda key, **more: print(key, json.dumps(dict(words=w.status_words, error=w.error, **more)))
proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, ENDPOINT])
w = widgets.watch_vllm(ENDPOINT, poll_interval=0.05, redraw_interval=0.1)
for _ in range(600):
    await asyncio.sleep(0.05)
    if len(w.source.model.nodes) > 5 and w.frames > 2:
        break
say("LIVE", drew=w.frames > 2, nodes=len(w.prefix_tree_view.tree.nodes))""",
    # killed mid-stream
    """proc.kill(); proc.wait()
for _ in range(200):
    await asyncio.sleep(0.05)
    if w.status_words[0] == "disconnected":
        break
say("KILLED")""",
    # garbage from whoever binds the endpoint next
    """sock = zmq.Context.instance().socket(zmq.PUB)
sock.bind(ENDPOINT)
for _ in range(100):
    await asyncio.sleep(0.05)
    if w.status_words[0] == "connected":
        break
await asyncio.sleep(0.5)
for _ in range(3):
    sock.send_multipart([b"not", b"a", b"publication", b"at all"])
    sock.send_multipart(pack_frames(b"", 0, b"\\xc1"))
for _ in range(100):
    await asyncio.sleep(0.05)
    if "malformed" in w.status_words:
        break
say("GARBAGE")""",
    """w.close(); sock.close(linger=0); print("ALIVE", json.dumps(6 * 7))""",
]


@pytest.mark.slow
def test_in_a_kernel_a_killed_publisher_and_garbage_are_states_not_crashes(tmp_path):
    import json

    import nbformat
    from nbclient import NotebookClient

    setup = f"PUBLISHER = {PUBLISHER!r}\nENDPOINT = 'ipc://{tmp_path}/pub'"
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(c) for c in [setup, *KERNEL_CELLS]],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    out = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    said = {k: json.loads(v) for k, v in (line.split(" ", 1) for line in out.splitlines())}
    live, killed, garbage = (said[k]["words"] for k in ("LIVE", "KILLED", "GARBAGE"))
    # a gap (joined after the publisher's first batch, no replay endpoint) may come or not
    assert live[0] == "connected" and set(live[1:]) <= {"gap"}, out
    assert said["LIVE"]["drew"] and said["LIVE"]["nodes"] > 5, out  # the task polled and drew
    assert killed[0] == "disconnected", out
    # the new binder's seq 0 after a disconnect: a restart; its frames are garbage
    assert garbage[0] == "connected" and {"malformed", "restarted"} <= set(garbage), out
    assert not any(said[k]["error"] for k in ("LIVE", "KILLED", "GARBAGE")), out
    assert said["ALIVE"] == 42, out


def test_a_view_of_the_watch_that_raises_shows_it_and_the_others_draw(monkeypatch):
    """The watch's views go through the same guard as the workbench's (views.draw_views): a view
    that raises shows its error (the traceback a click away) and the status line names it; the
    other views draw, and nothing raises out of a poll."""
    from cache_helpers import cache_of, trunk_and_branches

    from widgets.watcher import Watch

    w = Watch(cache_of(trunk_and_branches()))  # no running loop: it draws on refresh()
    try:

        def broken(ctx):
            raise RuntimeError("a bug in the occupancy view")

        monkeypatch.setattr(w.view("occupancy"), "draw", broken)
        w.refresh()
        w.tick()
        view = w.view("occupancy")
        assert view.error == "RuntimeError: a bug in the occupancy view"
        assert "Traceback" in view.failure.value
        assert "the occupancy view failed: RuntimeError" in w.status.value
        assert len(w.prefix_tree_view.figure.data[2].x) == 3  # 1 -> 2 -> 3 left after evictions
    finally:
        w.close()
