"""The History (widgets/model/history.py): the one per-step store, its bounds, and the records
read back as DataFrames."""

from __future__ import annotations

import dataclasses

import pytest
from widget_helpers import EXPECTED, SCRIPT, pressure

from widgets.model.history import Frame, History, RecordedSteps
from widgets.model.states import FINISHED, IDLE, PREEMPTED, PREFILL, WAITING
from widgets.views.timing import TimingView


def test_history_computes_each_steps_timeline_column_once():
    h = History()
    for r in SCRIPT:
        kept = h.append(Frame(r, None))
        assert kept.column is h.latest.column and kept.record is r
    timeline = h.timeline
    assert timeline.states() == EXPECTED
    assert [f.step for f in h.window(6, 2)] == [5] and h.window(9, 2) == h.window(-1, 5) == []
    a, phases = TimingView.window_arrays(h.window(3, 3))
    assert a[:, 0].tolist() == [1, 2, 3] and a[:, 1].tolist() == [8, 0, 0]  # prefill tokens
    assert a[:, 2].tolist() == [1, 1, 1] and a[:, -1].tolist() == [0.002, 0.002, 0.006]
    assert phases == ["mixed", "decode", "decode"]
    rec = RecordedSteps(h)
    assert rec.steps.step.tolist() == list(range(6)) and rec.max_steps == h.max_steps
    assert rec.sequences.set_index("seq_id").num_preemptions.to_dict() == {0: 0, 1: 1, 2: 0}
    h.clear()  # the one clear: no frame, no status, no record is left
    assert timeline.states() == {} and rec.steps.empty and rec.events.empty
    h.append(Frame(SCRIPT[5], None))  # seq 2's status went with the clear: no row for it
    assert h.latest.column.seq_ids.tolist() == []


def test_a_dropped_frame_takes_its_column_and_record_along():
    h = History(max_steps=3)
    for r in SCRIPT:
        h.append(Frame(r, None))
    assert h.timeline.states() == {
        0: {3: FINISHED},
        1: {3: PREEMPTED, 4: PREFILL, 5: IDLE},
        2: {3: WAITING, 4: WAITING, 5: WAITING},
    }
    assert RecordedSteps(h).steps.step.tolist() == [3, 4, 5]
    assert h.timeline.to_frame().step.unique().tolist() == [3, 4, 5]


def test_history_is_bounded_by_steps_and_bytes(wb):
    pressure(wb, 2)
    wb.step(6)
    frames = list(wb.history.frames)
    per = wb.history.nbytes // len(frames)
    h = History(max_steps=4, max_bytes=10 * per)
    for f in frames:
        h.append(f)
    assert [f.step for f in h.frames] == [2, 3, 4, 5]
    h = History(max_steps=100, max_bytes=int(2.5 * per))
    for f in frames:
        h.append(f)
    assert len(h) in (2, 3) and h.last_step == 5
    assert h.snapshot_at(5) is frames[5].snapshot
    with pytest.raises(KeyError):
        h.at(0)
    h.append(Frame(dataclasses.replace(frames[5].record, step=9), None, {}))
    assert h.snapshot_at(9) is frames[5].snapshot  # the nearest earlier snapshot
    assert [f.step for f in h.back_from(9, 2)] == [9, 5]


def test_one_clear_of_the_history_empties_every_view(wb):
    pressure(wb, 4, max_tokens=40)
    wb.step(12)
    assert len(wb.timing_view.figure.data[0].x) == 12 and wb.history.timeline.states()
    wb.history.clear()  # nothing else: the views and wb.recorder have no store of their own
    wb.redraw()
    assert list(wb.timeline_view.figure.data[0].x) == []
    assert list(wb.timing_view.figure.data[0].x) == []
    assert wb.history.timeline.states() == {} and wb.recorder.steps.empty
    assert wb.recorder.events.empty and wb.recorder.sequences.empty
    wb.step(1)  # the engine goes on: the views show only what came after the clear
    assert list(wb.timing_view.figure.data[0].x) == ["12"] and len(wb.recorder.steps) == 1
    assert list(wb.timeline_view.figure.data[0].x) == ["12"]  # steps: category labels
