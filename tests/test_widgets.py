"""Workbench logic without a browser: the controls are driven the way a browser drives them
(``button.click()``, ``toggle.value = True``, ``slider.value = k``) and the figures' data is
compared with what the engine reports (snapshots, recorded events)."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import multiprocessing as mp
import os

import numpy as np
import pytest

import widgets
from nanovllm import SamplingParams
from nanovllm.engine.core.events import SequenceEvent, StepRecord, StepTiming
from nanovllm.engine.core.sequence import SequenceStatus
from nanovllm.engine.observe.snapshot import BLOCK_STATE_NAMES
from nanovllm.errors import ConfigError
from widgets import TEACHING_DEFAULTS, Workbench
from widgets._blocks import blocks_named
from widgets._history import Frame, History, RecordedSteps, Throttle
from widgets._timeline import (
    DECODE,
    FINISHED,
    IDLE,
    PREEMPTED,
    PREFILL,
    WAITING,
    SequenceTimeline,
)
from widgets._timing import TimingView

PROMPT = "The KV cache is the largest consumer of memory in an inference engine."
LONG = " ".join(["A paged engine splits the cache into fixed-size blocks."] * 6)  # ~70 tokens
GREEDY_12 = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)


@pytest.fixture
def wb(tiny_model):
    bench = Workbench(tiny_model, TEACHING_DEFAULTS, window=1000, snapshot_every_step=True)
    yield bench
    bench.close()


def flat_cells(bench: Workbench, prop: str) -> list:
    """One property of the block grid (z, text, hovertext), flattened, padding cells dropped."""
    return (
        np.asarray(getattr(bench.block_view.figure.data[0], prop))
        .ravel()[: bench.block_view.num_blocks]
        .tolist()
    )


def grid_values(bench: Workbench) -> list[int]:
    return [int(v) for v in flat_cells(bench, "z")]


def grid_labels(bench: Workbench) -> list[str]:
    return flat_cells(bench, "text")


def figure_states(bench: Workbench) -> dict[tuple[int, int], int]:
    """{(seq id, step): code} as drawn in the timeline figure."""
    grid = bench.timeline_view.figure.data[0]
    return {
        (int(label.split()[1]), int(step)): int(code)
        for label, row in zip(grid.y, grid.z, strict=True)
        for step, code in zip(grid.x, row, strict=True)
        if code is not None
    }


def expected_states(rec) -> dict[tuple[int, int], int]:
    """The timeline, re-derived from the Recorder's DataFrames (events + scheduled phases)."""
    events, sched = rec.events, rec.scheduled
    status: dict[int, str] = {}
    out = {}
    for step in rec.steps.step.tolist():
        finished = set()
        for e in events[events.step == step].itertuples():
            status[e.seq_id] = e.after
            if e.after == "FINISHED":
                finished.add(e.seq_id)
        here = sched[sched.step == step]
        phase = dict(zip(here.seq_id.tolist(), here.phase.tolist(), strict=True))
        for seq_id, st in status.items():
            if seq_id in finished:
                out[seq_id, step] = FINISHED
            elif seq_id in phase:
                out[seq_id, step] = PREFILL if phase[seq_id] == "prefill" else DECODE
            else:
                out[seq_id, step] = {"WAITING": WAITING, "RUNNING": IDLE, "PREEMPTED": PREEMPTED}[
                    st
                ]
        for seq_id in finished:
            del status[seq_id]
    return out


async def until(condition, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def pressure(bench: Workbench, n: int = 4, max_tokens: int = 24) -> list[int]:
    """n requests of ~130 prompt tokens (9 blocks of 16 each, and growing)."""
    return [
        bench.add_request(f"{i}: {LONG}", max_tokens=max_tokens, ignore_eos=True) for i in range(n)
    ]


# ---- Step, block grid, metrics -------------------------------------------------------------------
def test_step_button_draws_the_engine_snapshot(wb):
    for i in range(3):
        wb.add_request(f"{i} {PROMPT}", max_tokens=8)
    wb.controls.step_button.click()
    snap = wb.llm.snapshot()
    assert len(wb.history) == 1 and wb.history.last_step == 0
    assert grid_values(wb) == snap.block_state.tolist()
    assert grid_labels(wb) == [
        ",".join(map(str, snap.owners.get(b, ()))) for b in range(snap.num_blocks)
    ]
    hover = flat_cells(wb, "hovertext")
    owned = next(iter(snap.owners))
    assert f"owners: seq {snap.owners[owned][0]}" in hover[owned]
    assert f"{BLOCK_STATE_NAMES[snap.block_state[owned]]}" in hover[owned]
    assert "<b>Step 0</b> (live)" in wb.metrics_panel.html
    assert wb.controls.slider.max == 0 and not wb.controls.slider.disabled

    wb.controls.steps.value = 3
    wb.controls.step_button.click()
    assert wb.history.last_step == 3 and len(wb.recorder.steps) == 4
    assert grid_values(wb) == wb.llm.snapshot().block_state.tolist()
    timing = wb.timing_view.figure.data
    assert list(timing[0].x) == [0, 1, 2, 3]
    assert list(timing[5].y) == wb.recorder.steps.prefill_tokens.tolist()  # prefill tokens per step
    assert list(timing[6].y) == wb.recorder.steps.decode_tokens.tolist()
    fwd_ms = np.array(timing[2].customdata)  # ms on hover; the bars are shares of the step
    assert np.allclose(sum(np.array(t.y) for t in timing[:5]), 100)
    assert np.allclose(fwd_ms, wb.recorder.steps.t_forward.to_numpy() * 1e3)


def test_hash_chain_and_cached_blocks_in_hover(wb):
    wb.add_request(LONG, max_tokens=2)
    wb.step(10)  # runs to completion: its full blocks stay cached-free
    snap = wb.llm.snapshot()
    cached = [
        b for b in range(snap.num_blocks) if BLOCK_STATE_NAMES[snap.block_state[b]] == "cached"
    ]
    assert cached, "a finished request leaves its full blocks in the prefix cache"
    hover = flat_cells(wb, "hovertext")
    texts = [hover[b] for b in cached]
    assert all("holds a prefix hash" in t for t in texts)
    assert any("first in its chain" in t for t in texts) and any(
        "chained after block" in t for t in texts
    )


# ---- Run / Pause --------------------------------------------------------------------------------
def test_run_toggle_steps_until_paused_and_clicks_are_handled_while_running(wb):
    pressure(wb, 4)

    async def scenario():
        wb.controls.delay.value = 0.002
        wb.controls.run_toggle.value = True
        assert wb.running and wb.controls.run_toggle.description == "Pause"
        assert wb.controls.step_button.disabled
        await until(lambda: len(wb.history) > 3)  # the task steps while the loop is free
        wb.controls.run_toggle.value = False  # a click while the task runs
        await asyncio.sleep(0.05)
        assert not wb.running and wb.controls.run_toggle.description == "Run"
        paused_at = len(wb.history)
        await asyncio.sleep(0.1)
        assert len(wb.history) == paused_at, "no step after Pause"
        wb.controls.delay.value = 0.0
        wb.run()
        await until(lambda: not wb.running)  # runs on its own until every request finished

    asyncio.run(scenario())
    assert not wb.llm.has_unfinished()
    assert wb.controls.run_toggle.value is False and "idle" in wb.controls.status.value
    assert wb.metrics_panel.html.startswith(f"<div><b>Step {wb.history.last_step}</b>")
    assert grid_values(wb) == wb.llm.snapshot().block_state.tolist()


def test_run_outside_a_loop_says_what_to_do(wb):
    with pytest.raises(RuntimeError, match="step"):
        wb.run()
    wb.controls.run_toggle.value = True  # the toggle reports it and springs back
    assert not wb.running and wb.controls.run_toggle.value is False
    assert "RuntimeError" in wb.controls.status.value


# ---- Timeline ------------------------------------------------------------------------------------
def test_timeline_rows_equal_the_recorded_events(tiny_model):
    wb = Workbench(tiny_model, dict(TEACHING_DEFAULTS, num_kvcache_blocks=40), window=1000)
    pressure(wb, 4, max_tokens=40)  # 4 x 11 blocks > 40: one is preempted
    while wb.llm.has_unfinished():
        wb.step(20)
    wb.close()
    rec = wb.recorder
    assert rec.steps.preempted.sum() > 0, "the workload must preempt"
    expected = expected_states(rec)
    assert wb.timeline_view.timeline.states() == {
        s: {t: c for (q, t), c in expected.items() if q == s} for s in {q for q, _ in expected}
    }
    assert figure_states(wb) == expected
    frame = wb.timeline_view.timeline.to_frame()
    assert len(frame) == len(expected) and set(frame.state) >= {
        "prefilling",
        "decoding",
        "preempted",
    }
    marks = wb.timeline_view.figure.data[1]
    pre = rec.events[rec.events.after == "PREEMPTED"]
    assert sorted(zip(marks.x, marks.y, strict=True)) == sorted(
        (s, f"seq {q}") for s, q in zip(pre.step, pre.seq_id, strict=True)
    )
    finished = rec.events[rec.events.after == "FINISHED"]
    assert all(
        expected[q, s] == FINISHED for q, s in zip(finished.seq_id, finished.step, strict=True)
    )


# ---- Time travel ---------------------------------------------------------------------------------
def test_slider_scrubs_back_and_every_view_shows_that_step(wb):
    seen = {}
    wb.llm.subscribe(lambda r: seen.__setitem__(r.step, wb.llm.snapshot().block_state.tolist()))
    pressure(wb, 4)
    wb.step(12)
    last = wb.history.last_step
    assert wb.controls.slider.max == last
    wb.controls.slider.value = 2
    assert wb.shown_step == 2
    assert grid_values(wb) == seen[2]
    assert max(wb.timeline_view.figure.data[0].x) == 2 and max(wb.timing_view.figure.data[0].x) == 2
    assert "<b>Step 2</b> (time travel" in wb.metrics_panel.html
    assert (
        "requests added</td><td style='padding:1px 6px;border-bottom:1px solid #eee'><b>4<"
        in wb.metrics_panel.html
    )

    wb.step(1)  # stepping returns to live
    assert wb.shown_step == last + 1 and wb.controls.slider.value == last + 1
    wb.show_step(5)
    assert wb.controls.slider.value == 5 and grid_values(wb) == seen[5]
    wb.controls.live_button.click()
    assert wb.shown_step == wb.history.last_step and grid_values(wb) == seen[last + 1]
    with pytest.raises(ValueError, match="kept history"):
        wb.show_step(last + 100)


def test_costly_snapshots_are_kept_only_at_redraws(tiny_model):
    bench = Workbench(
        tiny_model, dict(TEACHING_DEFAULTS, num_kvcache_blocks=5000), redraw_interval=1e9
    )
    try:
        pressure(bench, 2)
        bench._snap_cost = 1.0  # as if a snapshot cost far more than 1% of a step
        bench.step(5)  # the throttle allows only the first redraw and the one step() ends with
        kept = [f.step for f in bench.history.frames if f.snapshot is not None]
        assert kept == [0, 4]
        # no per-block text at this size: a hover line per cell of 8 blocks (see _cells.py)
        hover = np.asarray(bench.block_view.figure.data[0].hovertext, dtype=object).ravel()
        assert bench.block_view.per_cell == 8 and sum(bool(h) for h in hover) == 625
        bench.show_step(2)
        assert "nearest snapshot: after step 0" in bench.block_view.figure.layout.title.text
        assert "totals as of step 0" in bench.metrics_panel.html
        bench.snapshot_every_step = True
        bench.step(1)
        assert bench.history.at(5).snapshot is not None
    finally:
        bench.close()


def test_cheap_snapshots_are_kept_for_every_step(tiny_model):
    bench = Workbench(tiny_model, TEACHING_DEFAULTS)
    try:
        bench._step_cost = 1.0  # as if each step took a second: a snapshot costs nothing beside it
        pressure(bench, 1)
        bench.step(4)
        assert all(f.snapshot is not None for f in bench.history.frames)
    finally:
        bench.close()


# ---- Integrity overlay ---------------------------------------------------------------------------
def test_integrity_overlay_marks_the_blocks_a_violation_names(wb):
    wb.add_request(PROMPT, max_tokens=8)
    wb.step(2)
    wb.controls.integrity.value = True
    assert wb.integrity_overlay and not wb.block_view.problems
    assert "integrity check: <span style='color:#047857'><b>OK" in wb.metrics_panel.html
    block = next(iter(wb.llm.snapshot().owners))
    wb.llm.block_manager.blocks[
        block
    ].ref_count += 1  # corrupt the cache (a test may; widgets never)
    try:
        wb.step(1)
        assert wb.block_view.problems
        overlay = wb.block_view.figure.data[1]
        assert (overlay.x[0], overlay.y[0]) == wb.block_view.position(block)
        assert f"block {block} has ref_count" in overlay.text[0]
        assert "violation" in wb.metrics_panel.html
    finally:
        wb.llm.block_manager.blocks[block].ref_count -= 1
    wb.integrity_overlay = False
    assert wb.controls.integrity.value is False and "integrity check: off" in wb.metrics_panel.html


def test_blocks_named_reads_every_integrity_message_format():
    assert blocks_named("block 5 is in the free list with ref_count 3") == {5}
    assert blocks_named("block 7 has ref_count 2, but 1 sequence(s) hold it") == {7}
    assert blocks_named("hash table maps 0x1f to block 9, whose hash differs") == {9}
    assert blocks_named("waiting seq 4 holds blocks [1, 2]") == {1, 2}
    assert blocks_named("seq 3 lists a block twice: [4, 6, 4]") == {4, 6}
    assert blocks_named("seq 3 computed more tokens than its blocks hold") == set()


# ---- Requests form, Reset ------------------------------------------------------------------------
def test_add_form_and_reset(wb):
    c = wb.controls
    c.prompt.value, c.max_tokens.value, c.temperature.value, c.copies.value = PROMPT, 5, 0.7, 3
    c.add_button.click()
    assert [s.status for s in wb.llm.snapshot().sequences] == ["WAITING"] * 3
    assert "added requests 0, 1, 2" in c.status.value
    c.prompt.value = ""
    c.copies.value = 1
    c.add_button.click()
    assert "RequestError" in c.status.value  # shown, not raised
    wb.step(2)
    c.reset_button.click()
    assert wb.llm.snapshot().sequences == () and not wb.llm.has_unfinished()
    assert len(wb.history) == 0 and wb.recorder.steps.empty and wb.recorder.events.empty
    assert c.slider.disabled and wb.metrics_panel.html == wb.metrics_panel.empty_html()
    assert list(wb.timeline_view.figure.data[0].x) == [] and wb.llm.get_metrics()["steps"] == 0
    old = wb.llm
    wb.reset(rebuild=True)
    assert old.closed and not wb.llm.closed and wb.llm is not old
    wb.add_request(PROMPT, max_tokens=2)
    assert len(wb.step(5)) == 2 and wb.history.first_step == 0


# ---- generate() in a cell ------------------------------------------------------------------------
def header(bench: Workbench) -> str:
    return bench.metrics_panel.html.split("</b>")[0]


def test_views_follow_a_plain_generate_step_by_step(wb):
    wb.throttle = Throttle(interval=0.0, max_share=float("inf"))  # redraw every step, to observe it
    drawn = []
    wb.llm.subscribe(lambda r: drawn.append(header(wb)))  # runs after the workbench's observer
    wb.llm.generate([PROMPT, LONG], GREEDY_12, use_tqdm=False)
    assert len(drawn) == 12 and drawn == [f"<div><b>Step {s}" for s in range(12)]


def test_views_catch_up_once_a_generate_cell_returns(wb):
    async def cell():
        wb.throttle = Throttle(interval=0.2)  # the first step draws; the rest wait for the timer
        wb.llm.generate([PROMPT], GREEDY_12, use_tqdm=False)  # synchronous, as in a cell
        assert wb._timer is not None or not wb._dirty
        await asyncio.sleep(0.35)  # the kernel's loop is free again

    asyncio.run(cell())
    assert not wb._dirty and header(wb) == f"<div><b>Step {wb.history.last_step}"
    assert grid_values(wb) == wb.llm.snapshot().block_state.tolist()


# ---- History and throttle ------------------------------------------------------------------------
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


def test_throttle_limits_rate_and_share_of_time():
    t = Throttle(interval=0.1, max_share=0.05, max_interval=2.0)
    assert t.due(0.0)
    t.done(cost=0.001, now=0.0)  # 1 ms of CPU per draw: 10 draws a second
    assert not t.due(0.05) and t.due(0.11)
    t = Throttle(interval=0.1, max_share=0.05, max_interval=2.0)
    t.done(cost=0.02, now=1.0)  # 20 ms per draw: at most 5% of the time -> every 0.4 s
    assert not t.due(1.3) and t.due(1.41)
    t.done(cost=10.0, now=2.0)  # even very slow draws happen every max_interval
    assert not t.due(3.9) and t.due(4.01)


# ---- the kernel's singleton ----------------------------------------------------------------------
# Other test processes on the machine create segments too: only those of our engines count.
def segments_of(engines) -> set[str]:
    """/dev/shm segments belonging to these engines' tensor-parallel channels."""
    prefixes = tuple(e.executor.shm_prefix for e in engines if hasattr(e.executor, "shm_prefix"))
    names = os.listdir("/dev/shm") if os.path.isdir("/dev/shm") else []
    return {n for n in names if prefixes and n.startswith(prefixes)}


def test_rerunning_the_cell_keeps_exactly_one_engine_alive():
    widgets.close_workbench()
    gc.collect()
    children = set(mp.active_children())
    a, b = dict(num_kvcache_blocks=48), dict(num_kvcache_blocks=32)
    engines = []
    try:
        for i in range(10):
            bench = widgets.workbench(**(a if i % 2 == 0 else b))
            engines.append(bench.llm)
            assert widgets.workbench(**(a if i % 2 == 0 else b)) is bench, (
                "same arguments, same engine"
            )
            assert [e.closed for e in engines] == [True] * i + [False]
        assert len({id(e) for e in engines}) == 10
        assert engines[-1].config.num_kvcache_blocks == 32
        assert engines[-1].config.kvcache_block_size == 16  # the teaching defaults still apply
    finally:
        widgets.close_workbench()
    assert all(e.closed for e in engines) and widgets.current_workbench() is None
    gc.collect()
    assert set(mp.active_children()) == children and not segments_of(engines)


def test_workbench_options_reach_the_views_and_count_as_arguments():
    widgets.close_workbench()
    try:
        bench = widgets.workbench(num_kvcache_blocks=40, history_steps=50, redraw_interval=0.5)
        assert bench.llm.config.num_kvcache_blocks == 40
        assert bench.recorder.max_steps == 50 and bench.throttle.interval == 0.5
        again = widgets.workbench(num_kvcache_blocks=40, history_steps=50, redraw_interval=0.5)
        assert again is bench
        other = widgets.workbench(num_kvcache_blocks=40, history_steps=60, redraw_interval=0.5)
        assert other is not bench and bench.closed and other.recorder.max_steps == 60
        with pytest.raises(ConfigError, match="histroy_steps"):
            widgets.workbench(histroy_steps=10)
    finally:
        widgets.close_workbench()


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_switching_away_from_tensor_parallel_joins_workers_and_frees_shared_memory():
    widgets.close_workbench()
    children = set(mp.active_children())
    try:
        tp = widgets.workbench(tensor_parallel_size=2)
        workers = [p.pid for p in set(mp.active_children()) - children]
        assert len(workers) == 2
        tp.add_request(PROMPT, max_tokens=3, ignore_eos=True)
        assert len(tp.step(5)) == 3
        assert segments_of([tp.llm]), "the workers' channel lives in /dev/shm once a step ran"
        one = widgets.workbench()
        assert tp.closed and not one.closed
        assert set(mp.active_children()) == children and not any(pid_exists(p) for p in workers)
        assert not segments_of([tp.llm])
    finally:
        widgets.close_workbench()


# ---- closed engine, Rebuild, sticky errors -------------------------------------------------------
def test_a_closed_workbench_says_so_and_rebuilds_from_the_reset_button(wb):
    c = wb.controls
    wb.close()
    assert "closed" in c.status.value and c.reset_button.description == "Rebuild"
    assert c.step_button.disabled and c.add_button.disabled
    c.add_button.click()  # (a disabled button is clickable from code, not in the browser)
    assert "EngineClosedError" in c.status.value
    c.step_button.click()  # a second failing action keeps an error showing, not "idle"
    assert "EngineClosedError" in c.status.value and "Rebuild" in c.status.value
    c.reset_button.click()
    assert not wb.closed and c.reset_button.description == "Reset" and not c.step_button.disabled
    assert "new engine" in c.status.value
    wb.add_request(PROMPT, max_tokens=2)
    assert wb.step() and len(wb.history) == 1


def test_an_error_stays_until_an_action_succeeds(wb):
    c = wb.controls
    c.slider.disabled = False
    wb.wiring.guard(lambda: wb.show_step(99))  # no such step
    assert "ValueError" in c.status.value
    c.live_button.click()  # does not set a status of its own, but it worked: the error goes
    assert "ValueError" not in c.status.value


# ---- frozen figures ------------------------------------------------------------------------------
def test_a_frozen_figure_keeps_its_step_while_the_live_view_moves_on(wb):
    pressure(wb, 3)
    wb.step()
    frozen = wb.freeze("blocks")
    at_freeze = wb.history.snapshot_at(frozen.step).block_state.tolist()
    wb.step(6)
    cells = np.asarray(frozen.figure.data[0].z, dtype=float).ravel()[: wb.block_view.num_blocks]
    assert cells.astype(int).tolist() == at_freeze != grid_values(wb)
    bundle = frozen._repr_mimebundle_()
    assert "application/vnd.plotly.v1+json" in bundle and wb.frozen == [frozen]
    with pytest.raises(ValueError, match="choose one of"):
        wb.freeze("grid")


# ---- what crosses to the front end ---------------------------------------------------------------
def test_every_figure_update_is_json_without_nan(wb):
    import json

    from plotly.serializers import _py_to_js

    pressure(wb, 4, max_tokens=40)  # preemptions: the timeline has empty cells (not alive)
    while wb.llm.has_unfinished():
        wb.step(10)
    for fig in (wb.block_view.figure, wb.timeline_view.figure, wb.timing_view.figure):
        for trace in fig.data:
            for value in trace.to_plotly_json().values():
                packed = _py_to_js(value, None)
                if isinstance(packed, dict) and "buffer" in packed:
                    continue  # 1-D numbers travel as binary buffers, where NaN is fine
                json.dumps(packed, allow_nan=False)  # raises ValueError on NaN / inf


# ---- backpressure: a simulated page --------------------------------------------------------------
class FakePage:
    """Answers the workbench's pings like the browser view: a tick is echoed at once, after any
    click made before it (the page sends messages in order); a ping is answered after ``draw_s``."""

    def __init__(self, bench: Workbench, draw_s: float = 0.01):
        self.ack, self.clicks = bench.backpressure.ack, []
        loop = asyncio.get_running_loop()
        self.ack.observe(lambda _: loop.call_soon(self._tock), "tick")
        self.ack.observe(lambda _: loop.call_later(draw_s, self._pong), "ping")
        self._pong()  # the view's hello

    def _tock(self):
        while self.clicks:
            self.clicks.pop(0)()
        self.ack.tock = self.ack.tick

    def _pong(self):
        self.ack.pong = self.ack.ping


def test_run_pauses_after_at_most_one_step_behind_a_click(tiny_model):
    asyncio.run(run_pauses_after_at_most_one_step(tiny_model))


async def run_pauses_after_at_most_one_step(tiny_model):
    bench = Workbench(tiny_model, TEACHING_DEFAULTS)
    try:
        # the ordering guarantee, not the machine's speed: a loaded machine must not make the
        # simulated page count as gone (that fallback has its own test below)
        bench.backpressure.timeout = 30.0
        bench.throttle.interval, bench.throttle.max_share = 0.0, 1.0  # only the page gates redraws
        page = FakePage(bench)
        assert bench.backpressure.connected
        pressure(bench, 12, max_tokens=300)
        drawn_while_running = 0
        for _ in range(5):
            started, redraws = len(bench.history), bench.redraws
            bench.controls.run_toggle.value = True
            await until(lambda s=started: len(bench.history) >= s + 20)
            steps_at_click = len(bench.history)
            drawn_while_running += bench.redraws - redraws
            page.clicks.append(lambda: setattr(bench.controls.run_toggle, "value", False))
            await until(lambda: not bench.running)
            assert len(bench.history) - steps_at_click <= 1, bench.dashboard.controls.status.value
        # the page answered, so the views moved while running (how often: the machine's speed)
        assert drawn_while_running >= 1
    finally:
        bench.close()


def test_redraws_wait_for_the_page_and_go_on_without_one(tiny_model):
    asyncio.run(redraws_wait_for_the_page(tiny_model))


async def redraws_wait_for_the_page(tiny_model):
    bench = Workbench(tiny_model, TEACHING_DEFAULTS, redraw_interval=0.0)
    try:
        bp = bench.backpressure
        assert not bp.connected and bp.ready()  # no page: nothing waits
        bp.ack.pong = bp.ack.ping  # a view said hello
        bp.sent(now=100.0)  # a redraw went out and is not drawn yet
        assert not bp.ready(now=100.5)
        assert bp.ready(now=101.5) and not bp.connected  # unanswered for 1 s: no page any more
        await bp.answered()  # returns at once without a page
    finally:
        bench.close()


def test_timeline_rows_favour_sequences_that_ran_over_those_only_waiting():
    from widgets._timeline import pick_rows

    ids = np.array([1, 2, 3, 4, 5, 6, 1, 2])
    codes = np.array([DECODE, PREEMPTED, WAITING, WAITING, WAITING, WAITING, FINISHED, WAITING])
    assert pick_rows(ids, codes, 3).tolist() == [1, 2, 3]  # the two that ran, then next in line
    assert pick_rows(ids, codes, 1).tolist() == [2]  # too many active: the newest
    assert pick_rows(ids, codes, 10).tolist() == [1, 2, 3, 4, 5, 6]


def test_run_right_after_pause_keeps_one_stepping_task(tiny_model):
    asyncio.run(run_right_after_pause(tiny_model))


async def run_right_after_pause(tiny_model):
    bench = Workbench(tiny_model, TEACHING_DEFAULTS)
    try:
        bench.backpressure.timeout = 30.0
        FakePage(bench)  # with a page, the run loop waits for its echo between steps
        pressure(bench, 4, max_tokens=100)
        bench.run()
        await until(lambda: len(bench.history) >= 3)
        bench.pause()
        bench.run()  # before the loop has seen the Pause: it must carry on, not get a twin
        await asyncio.sleep(0.05)
        loops = [t for t in asyncio.all_tasks() if t.get_coro().__name__ == "_run_loop"]
        assert len(loops) == 1 and bench.running
        bench.pause()
        await until(lambda: all(t.done() for t in loops))
    finally:
        bench.close()


# ---- History: the one per-step store -------------------------------------------------------------
W_, R_, P_, F_ = (
    getattr(SequenceStatus, n) for n in ("WAITING", "RUNNING", "PREEMPTED", "FINISHED")
)


def scripted(step: int, sched: dict[int, bool], events=(), t: float = 0.001) -> StepRecord:
    """A StepRecord by hand: ``sched`` maps seq id -> is a decode (a prefill chunk of 8 tokens,
    or one decode token); ``events`` are (seq id, before, after)."""
    ids, dec = tuple(sched), tuple(sched.values())
    prefill = 8 * dec.count(False)
    return StepRecord(
        step=step,
        seq_ids=ids,
        is_decode=dec,
        num_new_tokens=tuple(1 if d else 8 for d in dec),
        starts=(0,) * len(ids),
        reaches_end=(True,) * len(ids),
        num_prefill_tokens=prefill,
        num_decode_tokens=dec.count(True),
        admitted_ids=(),
        preempted_ids=tuple(q for q, _, a in events if a is P_),
        finished_ids=tuple(q for q, _, a in events if a is F_),
        added_ids=tuple(q for q, b, _ in events if b is None),
        tokens=(7,) * len(ids),
        kv_blocks_used=0,
        kv_blocks_free=0,
        kv_blocks_cached=0,
        kv_blocks_total=0,
        prefix_hit_tokens=0,
        num_running=0,
        num_waiting=0,
        timing=StepTiming(forward=t, total=2 * t),
        events=tuple(SequenceEvent(step, q, b, a, "test") for q, b, a in events),
    )


SCRIPT = [  # seq 0 runs and finishes; seq 1 is preempted and resumes; seq 2 only waits
    scripted(0, {0: False}, [(0, None, W_), (1, None, W_), (0, W_, R_)]),
    scripted(1, {0: True, 1: False}, [(1, W_, R_), (2, None, W_)]),
    scripted(2, {0: True}, [(1, R_, P_)]),
    scripted(3, {0: True}, [(0, R_, F_)], t=0.003),
    scripted(4, {1: False}, [(1, P_, R_)]),
    scripted(5, {}),
]
EXPECTED = {
    0: {0: PREFILL, 1: DECODE, 2: DECODE, 3: FINISHED},
    1: {0: WAITING, 1: PREFILL, 2: PREEMPTED, 3: PREEMPTED, 4: PREFILL, 5: IDLE},
    2: {1: WAITING, 2: WAITING, 3: WAITING, 4: WAITING, 5: WAITING},
}


def test_history_computes_each_steps_timeline_column_once():
    h = History()
    for r in SCRIPT:
        kept = h.append(Frame(r, None))
        assert kept.column is h.latest.column and kept.record is r
    timeline = SequenceTimeline(h)
    assert timeline.states() == EXPECTED
    steps, ids, z, marks = timeline.window(last_step=4, num_steps=3, max_rows=10)  # steps 2..4
    assert steps.tolist() == [2, 3, 4] and ids == [0, 1, 2] and marks == [(2, 1)]
    assert np.array_equal(
        z,
        [[DECODE, FINISHED, np.nan], [PREEMPTED, PREEMPTED, PREFILL], [WAITING] * 3],
        equal_nan=True,
    )
    assert [f.step for f in h.window(6, 2)] == [5] and h.window(9, 2) == h.window(-1, 5) == []
    a, phases = TimingView(h, window=3).window_arrays(3)
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
    assert SequenceTimeline(h).states() == {
        0: {3: FINISHED},
        1: {3: PREEMPTED, 4: PREFILL, 5: IDLE},
        2: {3: WAITING, 4: WAITING, 5: WAITING},
    }
    assert RecordedSteps(h).steps.step.tolist() == [3, 4, 5]


def test_one_clear_of_the_history_empties_every_view(wb):
    pressure(wb, 4, max_tokens=40)
    wb.step(12)
    assert len(wb.timing_view.figure.data[0].x) == 12 and wb.timeline_view.timeline.states()
    wb.history.clear()  # nothing else: the views and wb.recorder have no store of their own
    wb.redraw()
    assert (
        list(wb.timeline_view.figure.data[0].x) == []
        and list(wb.timing_view.figure.data[0].x) == []
    )
    assert wb.timeline_view.timeline.states() == {} and wb.recorder.steps.empty
    assert wb.recorder.events.empty and wb.recorder.sequences.empty
    wb.step(1)  # the engine goes on: the views show only what came after the clear
    assert list(wb.timing_view.figure.data[0].x) == [12] and len(wb.recorder.steps) == 1
