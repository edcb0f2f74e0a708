"""Timeline states (widgets/model/states.py): the grid a window of frames draws, which rows it
keeps, and records that ran nothing (an abort's events), which are not steps."""

from __future__ import annotations

import numpy as np
from widget_helpers import F_, R_, SCRIPT, W_, scripted

from widgets.model.history import Frame, History
from widgets.model.states import (
    DECODE,
    FINISHED,
    PREEMPTED,
    PREFILL,
    WAITING,
    is_idle,
    pick_rows,
    timeline_window,
)


def test_the_grid_of_a_window():
    h = History()
    for r in SCRIPT:
        h.append(Frame(r, None))
    g = timeline_window(h.window(4, 3), max_rows=10)  # steps 2..4
    assert g.steps.tolist() == [2, 3, 4] and g.ids == [0, 1, 2] and g.preemptions == [(2, 1)]
    assert np.array_equal(
        g.z,
        [[DECODE, FINISHED, np.nan], [PREEMPTED, PREEMPTED, PREFILL], [WAITING] * 3],
        equal_nan=True,
    )


def test_timeline_rows_favour_sequences_that_ran_over_those_only_waiting():
    ids = np.array([1, 2, 3, 4, 5, 6, 1, 2])
    codes = np.array([DECODE, PREEMPTED, WAITING, WAITING, WAITING, WAITING, FINISHED, WAITING])
    assert pick_rows(ids, codes, 3).tolist() == [1, 2, 3]  # the two that ran, then next in line
    assert pick_rows(ids, codes, 1).tolist() == [2]  # too many active: the newest
    assert pick_rows(ids, codes, 10).tolist() == [1, 2, 3, 4, 5, 6]


def test_a_record_that_ran_nothing_is_not_a_column_and_its_finish_shows_before_it():
    """An abort between steps 1 and 3 reaches the observers as an idle record (step 2): no
    column of "running (not scheduled)", and the aborted request finishes in its last column."""
    script = [
        scripted(0, {0: False, 1: False}, [(0, None, W_), (1, None, W_), (0, W_, R_), (1, W_, R_)]),
        scripted(1, {0: True, 1: True}),
        scripted(2, {}, [(1, R_, F_)], reason="abort"),  # what flush_events() hands over
        scripted(3, {0: True}),
    ]
    h = History()
    for r in script:
        h.append(Frame(r, None))
    assert [is_idle(r) for r in script] == [False, False, True, False]
    assert h.timeline.states()[1] == {0: PREFILL, 1: DECODE, 2: FINISHED}  # the data stays whole
    g = timeline_window(h.window(3, 10), max_rows=10)
    assert g.steps.tolist() == [0, 1, 3]  # no column for step 2
    assert np.array_equal(
        g.z, [[PREFILL, DECODE, DECODE], [PREFILL, FINISHED, np.nan]], equal_nan=True
    )
