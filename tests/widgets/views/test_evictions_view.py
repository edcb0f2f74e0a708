"""The eviction stream (widgets/views/evictions.py): a marker per evicted block, in order, at its
place in its chain, coloured by how long it stayed; the newest listed as text; resets apart."""

from __future__ import annotations

import numpy as np
from cache_helpers import H, cache_of, trunk_and_branches
from transformers import AutoTokenizer

from nanovllm.engine.observe.cache_events import AllBlocksCleared, EventBatch
from widgets.views import DrawContext, ViewSetup
from widgets.views.evictions import EvictionView


def test_each_eviction_in_order_at_its_place_with_its_text(tiny_model):
    source = cache_of(trunk_and_branches(), tokenizer=tiny_model)
    view = EvictionView(ViewSetup(num_blocks=0, block_size=0))
    view.draw(DrawContext(cache=source))
    (scatter,) = view.figure.data
    assert [e.hash for e in view.shown] == [H(6), H(5), H(4)]  # oldest first
    assert np.asarray(scatter.x).tolist() == [1, 2, 3]  # the n-th eviction
    assert np.asarray(scatter.y).tolist() == [2, 3, 2]  # 6 and 4 below the trunk, 5 below 4
    assert np.asarray(scatter.marker.color).tolist() == [2.0, 3.5, 3.5]  # seconds cached
    assert view.figure.layout.title.text.startswith("Evictions: 3 blocks removed<br>")
    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert tok.decode([40, 41, 42, 43])[:20] in view.newest.value  # block 4's tokens, as text
    rows = view.newest.value.split("<tr>")[1:]
    assert len(rows) == 3 and "block 2 of its chain" in rows[0] and "block 3" in rows[1]
    assert "stayed 3.5 s" in scatter.hovertext[2]

    source.model.apply(EventBatch(110.0, (AllBlocksCleared(),)))  # a reset is no eviction
    view.draw(DrawContext(cache=source))
    title = view.figure.layout.title.text
    assert "3 blocks removed" in title and "1 reset(s) cleared the whole cache" in title
    assert len(view.figure.data[0].x) == 3


def test_none_yet():
    view = EvictionView(ViewSetup(num_blocks=0, block_size=0))
    view.draw(DrawContext(cache=cache_of(trunk_and_branches()[:2])))
    assert view.figure.layout.title.text.startswith("Evictions: none yet")
    assert view.shown == [] and view.newest.value == ""
