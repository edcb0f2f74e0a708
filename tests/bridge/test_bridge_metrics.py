"""vLLM's metrics in our names (bridge/metrics.py): the text exposition and get_metrics() agree."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest

pytest.importorskip("prometheus_client")

from nanovllm.bridge.metrics import (  # noqa: E402
    VllmMetrics,
    flatten_vllm_metrics,
    parse_prometheus,
    summarize,
)

# The shape of vLLM's /metrics (two engines' label sets, a counter, gauges, a histogram)
TEXT = """\
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 120.0
vllm:generation_tokens_total{engine="1",model_name="m"} 30.0
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 400.0
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 100.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="m"} 1.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 4.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 4.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 2.0
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 7.0
"""


def test_the_text_and_the_objects_flatten_alike():
    flat = parse_prometheus(TEXT)
    assert flat == {
        "vllm:generation_tokens": 150.0,
        "vllm:prefix_cache_queries": 400.0,
        "vllm:prefix_cache_hits": 100.0,
        "vllm:kv_cache_usage_perc": 0.25,
        "vllm:time_to_first_token_seconds_count": 4.0,
        "vllm:time_to_first_token_seconds_sum": 2.0,
    }
    objects = [  # what vllm.LLM.get_metrics() returns, attribute for attribute
        SimpleNamespace(name="vllm:generation_tokens", labels={"engine": "0"}, value=120),
        SimpleNamespace(name="vllm:generation_tokens", labels={"engine": "1"}, value=30),
        SimpleNamespace(name="vllm:prefix_cache_queries", labels={}, value=400),
        SimpleNamespace(name="vllm:prefix_cache_hits", labels={}, value=100),
        SimpleNamespace(name="vllm:kv_cache_usage_perc", labels={}, value=0.25),
        SimpleNamespace(
            name="vllm:time_to_first_token_seconds",
            labels={},
            count=4,
            sum=2.0,
            buckets={"0.1": 1, "+Inf": 4},
        ),
    ]
    assert flatten_vllm_metrics(objects) == flat
    assert summarize(flat) == {
        "generated_tokens": 150.0,
        "prefix_hit_tokens": 100.0,
        "kv_cache_usage": 0.25,
        "prefix_cache_hit_rate": 0.25,
        "mean_ttft": 0.5,
    }


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = TEXT.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_url_is_read_and_an_unreachable_one_is_a_state():
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        m = VllmMetrics(f"http://127.0.0.1:{server.server_port}/metrics")
        first, second = m.read(), m.read()
        assert first["generated_tokens"] == 150.0 and "generated_tokens_per_wall_s" not in first
        assert second["generated_tokens_per_wall_s"] == 0.0 and m.error is None
    finally:
        server.shutdown()
    gone = VllmMetrics("http://127.0.0.1:9/metrics", timeout=0.5)
    assert gone.read() is None and "URLError" in gone.error
