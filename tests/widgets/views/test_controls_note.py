"""The watch's first line (views/controls_note.py): Step / Run / Pause are ours only, said where the
source cannot be stepped (a vLLM's events), and where it can (our engine in this kernel)."""

from __future__ import annotations

from cache_helpers import cache_of, trunk_and_branches

from nanovllm.bridge.source import EngineCacheSource
from widgets.views import DrawContext, ViewSetup
from widgets.views.controls_note import NOTE, ControlsNote


def test_the_line_says_whose_controls_from_the_sources_can_step():
    view = ControlsNote(ViewSetup(num_blocks=0, block_size=0))
    view.draw(DrawContext(cache=cache_of(trunk_and_branches())))  # events: can_step False
    assert NOTE[False] in view.html and view.line.value == view.html
    assert "our engine only" in view.html
    ours = cache_of(trunk_and_branches())
    ours.can_step = EngineCacheSource.can_step  # what our engine's source says, without an engine
    view.draw(DrawContext(cache=ours))
    assert NOTE[True] in view.html and NOTE[False] not in view.html
    view.draw(DrawContext())  # no source: no line
    assert view.html == "" and view.line.value == ""
