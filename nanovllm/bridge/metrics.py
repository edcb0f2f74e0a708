"""vLLM's metrics, from a server's ``/metrics`` URL or an in-process ``vllm.LLM``, in our names.

Both sources come down to one flat dict, summed over labels (engines, models, finish reasons)::

    "vllm:generation_tokens" -> 1234.0          a counter's total ("_total" dropped)
    "vllm:kv_cache_usage_perc" -> 0.12          a gauge
    "vllm:time_to_first_token_seconds_count" / "_sum"   a histogram's count and sum

``summarize(flat)`` then names what our ``LLM.get_metrics()`` also reports the way it does
(``generated_tokens``, ``prefix_cache_hit_rate``, ...), so the metrics panel reads either engine.
A URL is parsed with ``prometheus_client``'s text parser (the ``bridge`` extra);
``vllm.LLM.get_metrics()`` needs the LLM built with ``disable_log_stats=False``.
"""

from __future__ import annotations

import time
import urllib.request
from typing import Any

from nanovllm.errors import ConfigError

# our name -> vLLM's flat name (a direct copy of the value)
SAME = {
    "requests_finished": "vllm:request_success",
    "prompt_tokens": "vllm:prompt_tokens",
    "generated_tokens": "vllm:generation_tokens",
    "preemptions": "vllm:num_preemptions",
    "prefix_hit_tokens": "vllm:prefix_cache_hits",
    "num_running": "vllm:num_requests_running",
    "num_waiting": "vllm:num_requests_waiting",
    "kv_cache_usage": "vllm:kv_cache_usage_perc",
}
# our name -> the histogram whose mean it is
MEANS = {
    "mean_ttft": "vllm:time_to_first_token_seconds",
    "mean_e2e_latency": "vllm:e2e_request_latency_seconds",
    "mean_inter_token_latency": "vllm:inter_token_latency_seconds",
}


def parse_prometheus(text: str) -> dict[str, float]:
    """The flat dict of a Prometheus text exposition (vLLM's series only)."""
    from prometheus_client.parser import text_string_to_metric_families

    flat: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name = s.name
            if not name.startswith("vllm:") or name.endswith(("_bucket", "_created")):
                continue
            name = name.removesuffix("_total") if family.type == "counter" else name
            flat[name] = flat.get(name, 0.0) + float(s.value)
    return flat


def flatten_vllm_metrics(metrics: list[Any]) -> dict[str, float]:
    """The flat dict of ``vllm.LLM.get_metrics()`` (its Counter / Gauge / Histogram / Vector
    objects, read by their attributes: vllm is not imported here)."""
    flat: dict[str, float] = {}

    def add(key: str, value: float) -> None:
        flat[key] = flat.get(key, 0.0) + float(value)

    for m in metrics:
        if hasattr(m, "buckets"):  # a histogram
            add(f"{m.name}_count", m.count)
            add(f"{m.name}_sum", m.sum)
        elif hasattr(m, "values"):  # a vector of counters
            add(m.name, sum(m.values))
        else:
            add(m.name, m.value)
    return flat


def summarize(flat: dict[str, float]) -> dict[str, float]:
    """What of ``flat`` our metrics panel shows, in our names (absent where vLLM has no series)."""
    out = {ours: flat[theirs] for ours, theirs in SAME.items() if theirs in flat}
    queries = flat.get("vllm:prefix_cache_queries")
    if queries:
        out["prefix_cache_hit_rate"] = flat.get("vllm:prefix_cache_hits", 0.0) / queries
    for ours, hist in MEANS.items():
        count = flat.get(f"{hist}_count")
        if count:
            out[ours] = flat[f"{hist}_sum"] / count
    return out


class VllmMetrics:
    """Reads vLLM's metrics on demand: ``read()`` returns our names, plus ``raw`` (the flat dict)
    and ``generated_tokens_per_wall_s`` (since the previous read; per second of wall time, not of
    step time as our ``generated_tokens_per_s``). A source that cannot be read gives ``error``
    and None instead of raising: a server that went away is a state, not a crash."""

    def __init__(self, source: str | Any, timeout: float = 2.0):
        if not isinstance(source, str) and not hasattr(source, "get_metrics"):
            raise ConfigError(
                f"metrics source {source!r}: pass a /metrics URL or a vllm.LLM (get_metrics())"
            )
        self.source, self.timeout = source, timeout
        self.error: str | None = None
        self._last: tuple[float, float] | None = None  # (time, generated tokens)

    def _flat(self) -> dict[str, float]:
        if isinstance(self.source, str):
            with urllib.request.urlopen(self.source, timeout=self.timeout) as r:
                return parse_prometheus(r.read().decode())
        return flatten_vllm_metrics(self.source.get_metrics())

    def read(self) -> dict[str, Any] | None:
        try:
            flat = self._flat()
        except Exception as e:  # unreachable URL, bad text, stats off: say so, keep going
            self.error = f"{type(e).__name__}: {e}"
            return None
        self.error = None
        out: dict[str, Any] = summarize(flat)
        now, gen = time.time(), out.get("generated_tokens", 0.0)
        if self._last is not None and now > self._last[0]:
            out["generated_tokens_per_wall_s"] = (gen - self._last[1]) / (now - self._last[0])
        self._last = (now, gen)
        out["raw"] = flat
        return out
