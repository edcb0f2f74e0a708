"""The cache sources (bridge/source.py) and LLM(kv_events_config=...): one shape, either engine."""

from __future__ import annotations

import socket

import pytest

pytest.importorskip("zmq")
pytest.importorskip("msgspec")

from nanovllm import LLM, ConfigError, SamplingParams  # noqa: E402
from nanovllm.bridge.source import EngineCacheSource, VllmCacheSource  # noqa: E402
from nanovllm.engine.core.block_manager import chain_hash  # noqa: E402
from nanovllm.testing.waiting import wait_for  # noqa: E402

SYSTEM = list(range(100, 148))  # three blocks of 16


def run_workload(llm) -> None:
    params = SamplingParams(temperature=0, max_tokens=20)
    llm.generate([SYSTEM + [i, i + 1] for i in range(4)], params, use_tqdm=False)
    llm.generate([[7, 8, 9] * 30], params, use_tqdm=False)  # evicts in a cache of 16 blocks


def config(tmp_path, **more):
    return {
        "enable_kv_cache_events": True,
        "endpoint": f"ipc://{tmp_path}/pub",
        "replay_endpoint": f"ipc://{tmp_path}/replay",
        **more,
    }


def test_both_sources_show_one_cache(tiny_model, tmp_path):
    events = config(tmp_path)
    with (
        LLM(
            tiny_model,
            kvcache_block_size=16,
            num_kvcache_blocks=16,
            max_model_len=128,
            kv_events_config=events,
        ) as llm,
        VllmCacheSource(
            **{k: events[k] for k in ("endpoint", "replay_endpoint")}, model=tiny_model
        ) as remote,
    ):
        local = EngineCacheSource(llm)
        assert wait_for(lambda: remote.state.status == "connected")
        run_workload(llm)
        sent = llm.kv_events.publisher
        assert sent.flush()
        assert wait_for(lambda: remote.poll() == 0 and remote.state.last_seq == sent.numbered - 1)
        mine, theirs = local.tree(), remote.tree()
        assert set(mine.nodes) == set(theirs.nodes)
        assert sorted(mine.edges) == sorted(theirs.edges)
        for h, n in mine.nodes.items():
            assert n.ref_count is not None and theirs.nodes[h].ref_count is None
            assert chain_hash(n.parent, n.token_ids) == h
            assert theirs.nodes[h].token_ids == n.token_ids
        assert local.has_ref_counts and local.can_step
        assert not remote.has_ref_counts and not remote.can_step
        assert len(remote.evictions()) == len(local.evictions()) > 0
        ev = remote.evictions()[-1]
        assert remote.text(ev.token_ids) == llm.tokenizer.decode(list(ev.token_ids))
        (trunk,) = remote.shared_prefixes(1)
        assert trunk.token_ids == tuple(SYSTEM) and trunk.branches >= 2  # some were evicted
        assert local.occupancy().blocks[-1] == remote.occupancy().blocks[-1] == len(mine.nodes)
        assert local.metrics()["requests_finished"] == 5 and remote.metrics() is None
        html = remote._repr_html_()
        assert "connected" in html and "longest shared prefixes" in html
        local.close()


def test_a_restarted_publisher_clears_the_tree(tiny_model, tmp_path):
    events = config(tmp_path)
    opts = dict(kvcache_block_size=16, max_model_len=128, kv_events_config=events)
    params = SamplingParams(temperature=0, max_tokens=4)
    with VllmCacheSource(events["endpoint"], events["replay_endpoint"]) as source:
        with LLM(tiny_model, **opts) as llm:
            llm.generate([SYSTEM], params, use_tqdm=False)
            assert wait_for(lambda: source.poll() or len(source.model.nodes) == 3)
        with LLM(tiny_model, **opts) as llm:  # a new engine on the same endpoint: empty cache
            llm.generate([[5] * 20], params, use_tqdm=False)
            assert wait_for(lambda: source.poll() or source.restarts_seen == 1)
            assert wait_for(lambda: source.poll() or len(source.model.nodes) == 1)
        assert source.state.restarts == 1 and "publisher restarts" in source._repr_html_()


def test_unreachable_metrics_are_a_state(tmp_path):
    with VllmCacheSource(f"ipc://{tmp_path}/none", metrics="http://127.0.0.1:9/metrics") as s:
        assert s.metrics() is None
        rows = dict(s.status_rows())
        assert "URLError" in rows["metrics"] or "Connection" in rows["metrics"]
        assert rows["status"].startswith("connecting")
    with pytest.raises(ConfigError, match="metrics source"):
        VllmCacheSource(f"ipc://{tmp_path}/none", metrics=42)


def test_kv_events_config_is_checked_before_the_model_loads(tmp_path):
    with pytest.raises(ConfigError, match="not known"):
        LLM(
            str(tmp_path / "no-model"),
            kv_events_config={"enable_kv_cache_events": True, "endpont": "tcp://*:5557"},
        )
    with pytest.raises(ConfigError, match="encoding"):
        LLM(str(tmp_path / "no-model"), kv_events_config={"encoding": "json"})


def test_a_busy_endpoint_is_a_config_error_and_no_events_without_enable(tiny_model, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    replay = f"tcp://127.0.0.1:{port}"  # a replay endpoint is always bound
    events = config(tmp_path, replay_endpoint=replay)
    with LLM(tiny_model, kvcache_block_size=16, kv_events_config=events) as first:
        assert first.kv_events is not None
        with pytest.raises(ConfigError, match="cannot bind"):
            LLM(
                tiny_model,
                kvcache_block_size=16,
                kv_events_config=config(
                    tmp_path, endpoint=f"ipc://{tmp_path}/b", replay_endpoint=replay
                ),
            )
    with LLM(tiny_model, kvcache_block_size=16, kv_events_config={"endpoint": "x"}) as off:
        assert off.kv_events is None
