"""The sequence-state timeline (widgets/views/timeline.py): its cells are the recorded events'
states, its markers the preemptions; an abort's idle record is no column; a click on a row picks."""

from __future__ import annotations

from plotly.callbacks import Points
from widget_helpers import expected_states, figure_states, pressure

from widgets import TEACHING_DEFAULTS, Workbench
from widgets.model.states import FINISHED, IDLE


def test_timeline_rows_equal_the_recorded_events(tiny_model):
    wb = Workbench(tiny_model, dict(TEACHING_DEFAULTS, num_kvcache_blocks=40), window=1000)
    pressure(wb, 4, max_tokens=40)  # 4 x 11 blocks > 40: one is preempted
    while wb.llm.has_unfinished():
        wb.step(20)
    wb.close()
    rec = wb.recorder
    assert rec.steps.preempted.sum() > 0, "the workload must preempt"
    expected = expected_states(rec)
    assert wb.history.timeline.states() == {
        s: {t: c for (q, t), c in expected.items() if q == s} for s in {q for q, _ in expected}
    }
    assert figure_states(wb) == expected
    frame = wb.history.timeline.to_frame()
    assert len(frame) == len(expected)
    assert set(frame.state) >= {"prefilling", "decoding", "preempted"}
    marks = wb.timeline_view.figure.data[1]
    pre = rec.events[rec.events.after == "PREEMPTED"]
    assert sorted(zip(marks.x, marks.y, strict=True)) == sorted(
        (str(s), f"seq {q}") for s, q in zip(pre.step, pre.seq_id, strict=True)
    )
    finished = rec.events[rec.events.after == "FINISHED"]
    assert all(
        expected[q, s] == FINISHED for q, s in zip(finished.seq_id, finished.step, strict=True)
    )


def test_the_step_after_an_abort_is_not_a_column_of_idle_requests(wb):
    """An abort hands its event over in a record that ran nothing: no "running (not scheduled)"
    column for it in the timeline, no empty bar in the timing view."""
    ids = pressure(wb, 3, max_tokens=40)
    wb.step(3)
    wb.abort(ids[1])
    idle = wb.history.last_step  # the abort's record
    assert "no step ran: only these events" in wb.metrics_panel.html  # shown as what it is
    wb.step(2)
    steps = [int(s) for s in wb.timeline_view.figure.data[0].x]
    assert idle not in steps and steps == [s for s in range(idle + 3) if s != idle]
    assert IDLE not in {c for (_, s), c in figure_states(wb).items() if s > idle - 1}
    assert figure_states(wb)[ids[1], idle - 1] == FINISHED  # aborted after its last step
    assert str(idle) not in wb.timing_view.figure.data[0].x


def test_a_click_on_a_row_picks_that_request(wb):
    a, _ = pressure(wb, 2)
    wb.step(2)
    row = Points(point_inds=[0], xs=[1], ys=[f"seq {a}"], trace_name="states", trace_index=0)
    wb.timeline_view.figure.data[0]._dispatch_on_click(row, None)
    assert wb.selection.picked == a and f"seq {a}" in wb.block_table_view.figure.layout.title.text
