"""The cache panel (widgets/views/cache_panel.py): the source's counts and rates, its
subscriber's counters, the longest shared prefix as text, and the last metrics read."""

from __future__ import annotations

from cache_helpers import cache_of, trunk_and_branches

from widgets.views import CACHE_REGISTRY, DrawContext, ViewSetup, view_classes
from widgets.views.cache_panel import CachePanel, metric_rows


def test_the_panel_shows_counts_prefixes_and_the_last_metrics(tiny_model):
    source = cache_of(trunk_and_branches()[:2], tokenizer=tiny_model)
    panel = CachePanel(ViewSetup(num_blocks=0, block_size=0))
    panel.draw(DrawContext(cache=source))
    html = panel.html
    assert "blocks in the cache" in html and "<b>6 × 4 tokens</b>" in html
    assert "2 blocks, 3 branches" in html  # the trunk: blocks 1, 2; below it 3, 4 and 6
    assert source.text(source.shared_prefixes(1)[0].token_ids)[:10] in html
    assert "metrics: none read" in html and "batches / events" not in html  # no subscriber
    source.keep_metrics({"prefix_cache_hit_rate": 0.5, "num_running": 2.0, "num_waiting": 1.0})
    panel.draw(DrawContext(cache=source))
    assert "<b>50.0%</b>" in panel.html and "<b>2 / 1</b>" in panel.html


def test_metric_rows_skip_what_the_engine_does_not_report():
    rows = dict(metric_rows({"mean_ttft": 0.0123, "generated_tokens": 5.0}))
    assert rows == {"mean TTFT, ms": "12.3"}  # prompt / generated needs both


def test_the_cache_views_draw_from_a_cache_source_alone_or_say_there_is_none():
    setup = ViewSetup(num_blocks=0, block_size=0)
    for ctx in (DrawContext(cache=cache_of(trunk_and_branches())), DrawContext()):
        for cls in view_classes(CACHE_REGISTRY):
            view = cls(setup)
            assert view.draw_safely(ctx) is None, (cls.__name__, view.error)
