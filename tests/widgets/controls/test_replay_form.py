"""The workbench's what-if replay (widgets/replay.py) and its form (widgets/controls/
replay_form.py): the recorded workload run again on a second engine, side by side; the table says
where the two runs differ for reasons other than the settings."""

from __future__ import annotations

import random
from html import escape

import pytest

from nanovllm.replay import RunSummary, schedule
from widgets import TEACHING_DEFAULTS, Workbench


def _prompt(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(10, 400) for _ in range(n)]


def test_the_workbench_replays_its_recorded_run_side_by_side(tiny_model):
    bench = Workbench(tiny_model, {**TEACHING_DEFAULTS, "max_model_len": 256})
    try:
        rng = random.Random(1)
        bench.reset()  # a reset before the run: the workload starts at the next request
        first = [
            bench.add_request(_prompt(rng, n), max_tokens=60, ignore_eos=True) for n in (90, 60)
        ]
        bench.step(4)
        late = bench.add_request(_prompt(rng, 120), max_tokens=60, ignore_eos=True)
        with pytest.raises(ValueError, match="unfinished"):
            bench.replay()
        while bench.llm.has_unfinished():
            bench.step(8)
        assert [len(a.prompt_token_ids) for a in bench.workload.workload] == [90, 60, 120]
        assert [a.step for a in bench.workload.workload] == [0, 0, 4]
        assert sorted(bench.workload.keys) == [*first, late]

        same = bench.replay()
        recorded = RunSummary.of(bench.recorder.records)
        assert same.recorded == recorded and same.complete
        assert same.replayed.summary.row() == {
            **recorded.row(),
            "step_time": same.replayed.summary.step_time,
        }
        assert same.replayed.schedule == schedule(bench.recorder.records, bench.workload.keys)

        panel = bench.replay_panel
        panel.blocks.value = 16  # the fewest that hold one sequence of max_model_len=256
        assert panel.changes() == {"num_kvcache_blocks": 16}
        panel.button.click()
        fewer = panel.last
        assert fewer.replayed.summary.preemptions > recorded.preemptions == 0
        assert fewer.replayed.outputs == same.replayed.outputs  # greedy: same tokens
        assert "num_kvcache_blocks=16" in panel.table.value and "preemptions" in panel.table.value
        blocks_in_use = [t for t in panel.figure.data if t.name == "replay: blocks in use"]
        assert list(blocks_in_use[0].y) == fewer.replayed.summary.series["kv_blocks_used"]
        assert max(blocks_in_use[0].y) <= 16
        table = fewer.table()
        assert table.loc["preemptions", "replay"] == fewer.replayed.summary.preemptions

        panel.blocks.value = 3  # too few: the error is shown, not raised
        panel.button.click()
        assert "KVCacheTooSmallError" in panel.table.value and panel.last is fewer
        # the table says why two rows differ for reasons of their own
        notes = fewer.table()["note"]
        assert "other work on the machine" in notes["step time (s)"]
        assert "note</th>" in fewer.html()
    finally:
        bench.close()


def test_aborts_are_named_and_the_preemption_axis_counts_whole_steps(tiny_model):
    bench = Workbench(tiny_model, {**TEACHING_DEFAULTS, "max_model_len": 256})
    try:
        rng = random.Random(2)
        ids = [bench.add_request(_prompt(rng, 40), max_tokens=30, ignore_eos=True) for _ in "ab"]
        bench.step(3)
        bench.abort(ids[1])
        while bench.llm.has_unfinished():
            bench.step(8)
        comparison = bench.replay(num_kvcache_blocks=16)
        assert comparison.aborted == 1
        assert "aborts are not replayed" in comparison.notes()["sequences finished"]
        axis = comparison.figure().layout.yaxis2
        assert axis.dtick >= 1 and axis.tick0 == 0  # no 0.2, 0.4, ... preemptions
        panel = bench.replay_panel
        bundle = panel._repr_mimebundle_()  # a form, not "<ReplayPanel at 0x...>"
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert callable(comparison._ipython_display_)  # the table and the figure
    finally:
        bench.close()


SPEC_ROWS = ("draft tokens", "accepted tokens", "acceptance rate", "mean acceptance length")


def test_the_comparison_has_speculation_rows_only_when_a_run_drafts(teaching_model):
    """An engine with a speculative_config: the table adds the tokens drafted and accepted, the
    acceptance rate and the mean acceptance length, from each run's summary (a replay without
    speculation shows a dash there); with no speculation in either run, no such rows."""
    spec = {"method": "ngram", "num_speculative_tokens": 3}
    week = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday Monday Tuesday"
    bench = Workbench(teaching_model, {**TEACHING_DEFAULTS, "speculative_config": spec})
    try:
        for prompt in (week, "one two three four five six"):
            bench.add_request(prompt, max_tokens=24, ignore_eos=True)
        while bench.llm.has_unfinished():
            bench.step(8)
        same = bench.replay()
        recorded = same.recorded
        assert recorded.speculative and recorded.accepted_tokens > 0
        table = same.table()
        assert list(table.index[-4:]) == list(SPEC_ROWS)
        assert table.loc["accepted tokens", "recorded"] == recorded.accepted_tokens
        assert table.loc["acceptance rate", "replay"] == same.replayed.summary.acceptance_rate
        length = f"{recorded.mean_acceptance_length:.3f}"
        assert "mean acceptance length" in same.html() and length in same.html()
        assert "accepted / draft tokens" in table.loc["acceptance rate", "note"]
        assert "draft tokens" in table.loc["decode tokens", "note"]  # why a drafting run has more
        plain = bench.replay(speculative_config=None)
        assert plain.table().loc["draft tokens", "replay"] is None
        assert plain.table().loc["draft tokens", "recorded"] == recorded.draft_tokens
        assert "—</td>" in plain.html()  # the replay drafted nothing: a dash, not 0
        shown_as_html_shows(plain)
    finally:
        bench.close()
    bench = Workbench(teaching_model, TEACHING_DEFAULTS)
    try:
        bench.add_request(week, max_tokens=8)
        while bench.llm.has_unfinished():
            bench.step(8)
        comparison = bench.replay()
        assert not comparison.recorded.speculative
        assert not set(SPEC_ROWS) & set(comparison.table().index)
        assert "acceptance" not in comparison.html()
        assert comparison.table().loc["decode tokens", "note"] == ""
    finally:
        bench.close()


def shown_as_html_shows(comparison) -> None:
    """``styled()``, what a notebook displays, reads like ``html()``: a dash for None, 3 decimals,
    counts with separators, every note whole; the DataFrame behind it keeps the numbers."""
    table = comparison.table()
    styled = comparison.styled()
    page = styled.to_html()
    for label, row in table.iterrows():
        for run in ("recorded", "replay"):
            v = row[run]
            want = "—" if v is None else f"{v:.3f}" if isinstance(v, float) else f"{v:,}"
            assert f">{want}</td>" in page, (label, run, v)
        assert escape(row["note"]) in page  # whole: no "..." at 50 characters
    assert any(len(n) > 50 for n in table["note"])  # a note pandas would cut
    assert styled.data.equals(table) and styled.data.loc["draft tokens", "replay"] is None
