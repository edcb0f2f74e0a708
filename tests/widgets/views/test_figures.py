"""Figures (widgets/views/figures.py): every view's figure loads plotly from the one shared
module, so no figure has to win anywidget's 2 s set-up race; a figure the page still drew blank
is renewed in its box and keeps answering clicks."""

from __future__ import annotations

import json

import numpy as np
from plotly.callbacks import Points

from widgets.views.figures import FIGURE_ESM, Figure, json_grid, plotly_module


def test_plotly_is_sent_once_and_every_figure_is_small(wb):
    figures = [v.figure for v in wb.dashboard.views if v.figure is not None]
    assert len(figures) >= 5 and all(isinstance(f, Figure) for f in figures)
    assert all(f._esm == FIGURE_ESM and len(f._esm) < 4000 for f in figures)
    module = plotly_module()
    assert len(module.source) > 4_000_000 and "FigureModel" in module.source[-20_000:]
    assert module in wb.dashboard.widget.children[-1].children  # in the page, hidden
    assert plotly_module() is module  # one per kernel


def test_what_crosses_to_the_page_is_json_without_nan():
    grid = json_grid(np.array([[1.0, np.nan], [np.inf, 2.0]]))
    assert grid == [[1.0, None], [None, 2.0]] and json.dumps(grid, allow_nan=False)


def test_a_figure_the_page_drew_blank_is_renewed_and_still_answers_clicks(wb):
    """The page reports (DrawAck.blank) a figure whose model lost its messages: the dashboard
    puts a new FigureWidget with the same data and layout in its box, clicks reach the new one,
    and after MAX_RENEWALS tries the status line says so."""
    from widgets.stage import MAX_RENEWALS

    a = wb.add_request(list(range(100, 152)), max_tokens=8, ignore_eos=True)
    wb.step(2)
    old = wb.block_view.figure
    wb.gate.page.blank = ["blocks"]  # as the page does
    new = wb.block_view.figure
    assert new is not old and wb.renewed == ["blocks"]
    assert wb.block_view.box.children == (new,) and isinstance(new, Figure)
    assert new.layout.title.text == old.layout.title.text
    np.testing.assert_array_equal(np.asarray(new.data[0].z), np.asarray(old.data[0].z))
    x, y = wb.block_view.position(wb.llm.request_sequences(a)[0].block_table[0])
    click = Points(point_inds=[[y, x]], xs=[x], ys=[y], trace_name="blocks", trace_index=0)
    new.data[0]._dispatch_on_click(click, None)
    assert wb.selection.picked == a
    wb.step(1)  # redraws go to the new figure
    assert new.layout.title.text.startswith(f"KV cache blocks after step {wb.shown_step}")
    for _ in range(MAX_RENEWALS + 1):  # the page keeps drawing it blank
        wb.gate.page.blank = []
        wb.gate.page.blank = ["blocks"]
    assert wb.renewed == ["blocks"] * MAX_RENEWALS
    assert "did not set up the blocks view" in wb.controls.status.value
    wb.gate.page.blank = ["no such view"]  # ignored
    assert wb.renewed == ["blocks"] * MAX_RENEWALS
