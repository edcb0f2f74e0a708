"""Our publisher -> our subscriber rebuilds exactly the prefix tree our snapshot shows, every step.

A seeded random workload (shared system prompts, random questions and lengths, requests arriving
and aborted mid-run, a cache small enough to evict) runs on the tiny model with KV events on. After
every step the subscriber's model must hold the snapshot's hashes with the same parent edges, and
each block's tokens must hash (with its parent) to its hash: the tokens are the right ones.
"""

from __future__ import annotations

import random

import pytest

pytest.importorskip("zmq")
pytest.importorskip("msgspec")

from nanovllm import LLM, SamplingParams  # noqa: E402
from nanovllm.bridge.subscriber import KvEventSubscriber  # noqa: E402
from nanovllm.engine.core.block_manager import chain_hash  # noqa: E402
from nanovllm.engine.observe.cache_model import PrefixCacheModel  # noqa: E402
from nanovllm.engine.observe.prefix_tree import prefix_tree  # noqa: E402
from nanovllm.engine.observe.snapshot import take_snapshot  # noqa: E402
from nanovllm.testing.waiting import wait_for as poll_until  # noqa: E402


def wait_for(cond, timeout=10.0):
    return poll_until(cond, timeout, poll=0.005)


def workload(seed: int, vocab: int, steps: int = 60):
    """(step -> prompts to add, step -> how many to abort): shared prefixes and random tails."""
    rng = random.Random(seed)
    systems = [[rng.randrange(vocab) for _ in range(rng.randint(20, 50))] for _ in range(3)]
    adds: dict[int, list[tuple[list[int], int]]] = {}
    for step in sorted(rng.sample(range(steps), 14)):
        for _ in range(rng.randint(1, 3)):
            head = rng.choice(systems) if rng.random() < 0.8 else []
            tail = [rng.randrange(vocab) for _ in range(rng.randint(1, 20))]
            adds.setdefault(step, []).append((head + tail, rng.randint(1, 24)))
    aborts = {s: 1 for s in rng.sample(range(steps), 5)}
    return adds, aborts


def assert_same_tree(model: PrefixCacheModel, snap) -> None:
    ours = prefix_tree(snap)
    assert set(model.nodes) == set(ours.nodes)
    for h, node in ours.nodes.items():
        got = model.nodes[h]
        assert got.parent == node.parent
        assert chain_hash(got.parent, got.token_ids) == h  # the tokens are the block's
    assert model.tree().children.keys() == ours.children.keys()


@pytest.mark.parametrize("encoding", ["map", "array"])
def test_publisher_to_subscriber_equals_snapshot_at_every_step(tiny_model, tmp_path, encoding):
    events = {
        "enable_kv_cache_events": True,
        "endpoint": f"ipc://{tmp_path}/pub",
        "replay_endpoint": f"ipc://{tmp_path}/replay",
        "encoding": encoding,
    }
    with (
        LLM(
            tiny_model,
            kvcache_block_size=16,
            num_kvcache_blocks=24,
            max_model_len=128,
            kv_events_config=events,
        ) as llm,
        KvEventSubscriber(events["endpoint"], events["replay_endpoint"]) as sub,
    ):
        assert wait_for(lambda: sub.state.status == "connected")
        sent = llm.kv_events.publisher
        model = PrefixCacheModel()
        adds, aborts = workload(seed=7, vocab=llm.config.spec.vocab_size)
        ids: list[int] = []
        removed_seen = 0
        for step in range(60):
            for prompt, n in adds.get(step, []):
                ids.append(llm.add_request(prompt, SamplingParams(temperature=0, max_tokens=n)))
            for _ in range(aborts.get(step, 0)):
                live = [i for i in ids if not llm.is_request_finished(i)]
                if live:
                    llm.abort(live[0])
            llm.step()
            assert sent.flush()
            assert wait_for(lambda: sub.state.last_seq == sent.numbered - 1)
            for item in sub.drain():
                model.apply(item)
            assert_same_tree(model, take_snapshot(llm))
            removed_seen = model.removed
        assert sub.state.complete and sub.state.malformed == 0
        assert removed_seen > 0, "the workload should evict: make the cache smaller"
        assert model.stored > 24
