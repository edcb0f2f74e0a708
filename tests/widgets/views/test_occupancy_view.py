"""The occupancy view (widgets/views/occupancy.py): blocks in the cache, stored and removed so far,
per event batch, from the cache source; the engine's KV cache usage (a metric) on its own axis."""

from __future__ import annotations

import numpy as np
from cache_helpers import cache_of, trunk_and_branches

from widgets.views import DrawContext, ViewSetup
from widgets.views.occupancy import OccupancyView


def test_the_lines_are_the_sources_occupancy_and_usage_its_metric_samples():
    source = cache_of(trunk_and_branches())
    view = OccupancyView(ViewSetup(num_blocks=0, block_size=0))
    view.draw(DrawContext(cache=source))
    blocks, stored, removed, used = view.figure.data
    assert np.asarray(blocks.x).tolist() == [0.0, 1.0, 3.0, 4.5]  # s since the first batch
    assert np.asarray(blocks.y).tolist() == [3, 6, 5, 3]
    assert np.asarray(stored.y).tolist() == [3, 6, 6, 6]
    assert np.asarray(removed.y).tolist() == [0, 0, 1, 3]
    assert len(used.x) == 0 and not view.figure.layout.yaxis2.visible  # no metrics read
    title = view.figure.layout.title.text
    assert title.startswith("Cache occupancy: 3 blocks in the cache") and "removed 3" in title

    source.keep_metrics({"kv_cache_usage": 0.25}, ts=102.0)
    source.keep_metrics(None, ts=103.0)  # a failed read is not a sample
    source.keep_metrics({"kv_cache_usage": 0.0}, ts=106.0)
    view.draw(DrawContext(cache=source))
    assert np.asarray(used.x).tolist() == [2.0, 6.0] and np.asarray(used.y).tolist() == [25, 0]
    assert view.figure.layout.yaxis2.visible and "KV cache usage" in view.figure.layout.title.text


def test_no_batch_and_no_source_say_so():
    view = OccupancyView(ViewSetup(num_blocks=0, block_size=0))
    view.draw(DrawContext())
    assert "no cache source" in view.figure.layout.title.text
    view.draw(DrawContext(cache=cache_of([])))
    assert view.figure.layout.title.text == "Cache occupancy: no event batch yet"
    assert len(view.figure.data[0].x) == 0
