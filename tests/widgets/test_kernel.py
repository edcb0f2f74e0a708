"""The kernel's one workbench (widgets/kernel.py): the same arguments give the same engine back,
other ones close the old engine first (workers joined, shared memory freed); the workbench's own
options are checked before anything is closed or built."""

from __future__ import annotations

import gc
import multiprocessing as mp
import os

import pytest
from widget_helpers import PROMPT

import widgets
from nanovllm.errors import ConfigError


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
        assert bench.recorder.max_steps == 50 and bench.gate.interval == 0.5
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


@pytest.mark.parametrize(
    "option, value",
    [
        ("history_steps", -5),
        ("history_steps", 0),
        ("history_steps", 2.5),
        ("history_bytes", True),
        ("window", 0),
        ("redraw_interval", -0.1),
        ("redraw_interval", float("nan")),
        ("redraw_interval", "fast"),
        ("snapshot_every_step", "yes"),
    ],
)
def test_a_bad_option_is_a_typed_error_naming_it(option, value):
    """``history_steps=-5`` was accepted, then every step's observer raised "pop from an empty
    deque" (a RuntimeWarning only) and the views never moved."""
    widgets.close_workbench()
    try:
        kept = widgets.workbench(num_kvcache_blocks=32)
        with pytest.raises(ConfigError, match=rf"^{option}=") as err:
            widgets.workbench(num_kvcache_blocks=32, **{option: value})
        assert repr(value) in str(err.value) and "pass" in str(err.value)
        assert not kept.closed and widgets.current_workbench() is kept  # nothing was touched
        with pytest.raises(ConfigError, match=rf"^{option}="):
            widgets.Workbench(kept.model, kept.config, **{option: value})
    finally:
        widgets.close_workbench()


def test_the_default_cache_is_a_legible_grid_where_the_form_can_show_preemption(monkeypatch):
    """Issue 24: the teaching cache is a few hundred blocks, the same count on CPU and GPU (a
    config value, not the memory probe's), drawn as a grid whose cells are wide enough for their
    owner labels; and a learner can make it preempt with the form alone: 12 copies of a counting
    prompt, 480 tokens each (the teaching model counts on), stop at a preemption."""
    monkeypatch.delenv("NANOVLLM_MODEL", raising=False)  # the teaching model, which counts
    widgets.close_workbench()
    try:
        wb = widgets.workbench()
        blocks = wb.llm.config.num_kvcache_blocks
        assert blocks == widgets.TEACHING_DEFAULTS["num_kvcache_blocks"] and 200 <= blocks <= 400
        grid = wb.block_view
        fig = grid.figure.layout
        cell_px = (fig.width - fig.margin.l - fig.margin.r) / grid.ncols
        assert grid.per_cell == 1 and cell_px >= 30, (grid.ncols, cell_px)  # "12+3" fits
        c = wb.controls
        c.prompt.value, c.max_tokens.value, c.copies.value = "1 2 3 4", 480, 12
        c.add_button.click()
        c.until.value = "preemption"  # the "until" menu
        hit = wb.run_until("preemption", background=False)
        assert hit is not None and hit.event == "preemption", wb.controls.status.value
        assert wb.llm.get_metrics()["preemptions"] >= 1
        labels = [t for row in grid.figure.data[0].text for t in row if t]
        assert len(labels) == len(wb.history.snapshot_at(hit.step).owners)  # every held block's
    finally:
        widgets.close_workbench()
