"""Breakpoints (widgets/model/breakpoints.py): Run and ``run_until`` stop at the first step with the
event, the step a run without breakpoints records first for it."""

from __future__ import annotations

import asyncio

import pytest

from widgets import TEACHING_DEFAULTS, Workbench
from widgets.model.breakpoints import Breakpoint, parse_request_id

LONG = " ".join(["A paged engine splits the cache into fixed-size blocks."] * 6)  # ~70 tokens
# 20 blocks of 16: two ~130-token requests (9 blocks each) growing by 40 tokens do not fit
CONFIG = {**TEACHING_DEFAULTS, "num_kvcache_blocks": 20, "max_model_len": 256}


def workload(bench: Workbench) -> list[int]:
    """Four requests that preempt each other (a resumed one finds its blocks in the prefix
    cache), then a copy of the first."""
    ids = [bench.add_request(f"{i}: {LONG}", max_tokens=40, ignore_eos=True) for i in range(4)]
    return ids + [bench.add_request(f"0: {LONG}", max_tokens=40, ignore_eos=True)]


@pytest.fixture(scope="module")
def reference(tiny_model):
    """The records of the workload run to the end with no breakpoint, and its request ids."""
    bench = Workbench(tiny_model, CONFIG)
    ids = workload(bench)
    while bench.llm.has_unfinished():
        bench.step(16)
    records = bench.recorder.records
    bench.close()
    return records, ids


def first(records, condition) -> int:
    return next(r.step for r in records if r.seq_ids and condition(r))


def expected_steps(records, ids) -> dict[tuple[str, int | None], int]:
    late, resumed = ids[4], ids[1]
    start = {  # where each admission's first chunk starts: past the tokens found cached
        (r.step, e.seq_id): e.start for r in records for e in r.scheduled
    }
    return {
        ("preemption", None): first(records, lambda r: r.preempted_ids),
        ("finish", None): first(records, lambda r: r.finished_ids),
        ("finish", ids[2]): first(records, lambda r: ids[2] in r.finished_ids),
        ("admission", late): first(records, lambda r: late in r.admitted_ids),
        ("prefix hit", None): first(records, lambda r: r.prefix_hit_tokens > 0),
        ("prefix hit", resumed): first(
            records, lambda r: resumed in r.admitted_ids and start[r.step, resumed] > 0
        ),
    }


@pytest.fixture
def bench(tiny_model):
    b = Workbench(tiny_model, CONFIG)
    yield b
    b.close()


def test_the_reference_run_has_every_event(reference):
    records, ids = reference
    steps = expected_steps(records, ids)
    assert steps[("preemption", None)] > 0 and steps[("prefix hit", ids[1])] > 0
    assert steps[("admission", ids[4])] > steps[("prefix hit", None)]
    assert len({steps[k] for k in steps}) >= 3  # the events happen at different steps


@pytest.mark.parametrize(
    "event, which",
    [
        ("preemption", None),
        ("finish", None),
        ("finish", 2),
        ("admission", 4),
        ("prefix hit", None),
        ("prefix hit", 1),
    ],
)
def test_run_until_stops_at_the_first_step_with_the_event(bench, reference, event, which):
    records, ids = reference
    request_id = None if which is None else ids[which]
    expected = expected_steps(records, ids)[(event, request_id)]
    ids_here = workload(bench)
    assert ids_here == ids  # a fresh engine numbers its requests the same way
    hit = bench.run_until(event, request_id)  # no loop here: steps synchronously
    assert hit is not None and (hit.step, hit.event) == (expected, event)
    assert bench.history.last_step == expected == bench.shown_step  # it shows that step
    assert f"step {expected}: {event}" in bench.controls.status.value
    mine = [r for r in bench.recorder.records if r.seq_ids]
    assert [r.step for r in mine] == [r.step for r in records if r.seq_ids][: len(mine)]


def test_run_pauses_at_the_breakpoint_and_run_again_goes_to_the_next_one(bench, reference):
    records, ids = reference
    preempting = [r.step for r in records if r.preempted_ids]
    assert len(preempting) >= 2
    workload(bench)
    bench.controls.until.value = "preemption"  # as a click in the dropdown
    assert bench.breakpoint == Breakpoint("preemption")

    async def scenario():
        bench.controls.run_toggle.value = True
        await until(lambda: not bench.running)
        assert bench.history.last_step == preempting[0]
        assert f"stopped at step {preempting[0]}: preemption" in bench.controls.status.value
        bench.run()  # Run again: on to the next preemption
        await until(lambda: not bench.running)

    asyncio.run(scenario())
    assert bench.history.last_step == preempting[1] == bench.driver.hit.step
    bench.controls.until.value = ""  # "until: -"
    assert bench.breakpoint is None
    assert bench.controls.until.label == "until: -"  # a label shows (None would show nothing)


def test_an_integrity_failure_stops_the_run_at_the_step_that_broke_the_cache(bench):
    workload(bench)
    broken = {}

    def corrupt(record):  # a bug injected after step 3 (what a faulty engine change would do)
        if record.step == 3:
            block = bench.llm.block_manager.blocks[bench.llm.scheduler.running[0].block_table[0]]
            block.ref_count += 1
            broken["block"] = block

    bench.llm.subscribe(corrupt)
    assert bench.run_until("integrity failure", max_steps=2) is None  # steps 0, 1: healthy
    assert "no integrity failure in 2 steps" in bench.controls.status.value
    hit = bench.run_until("integrity failure")
    assert hit.step == 3 and f"block {broken['block'].block_id}" in hit.detail
    broken["block"].ref_count -= 1


def test_the_request_box_reads_a_number_or_nothing(bench):
    assert parse_request_id(" 12 ") == 12 and parse_request_id("") is None
    with pytest.raises(ValueError, match="request id"):
        parse_request_id("seven")
    bench.controls.until.value = "finish"
    bench.controls.until_request.value = "x"  # shown as an error, the breakpoint unchanged
    assert "ConfigError" in bench.controls.status.value and bench.breakpoint == Breakpoint("finish")
    bench.controls.until_request.value = "3"
    assert bench.breakpoint == Breakpoint("finish", 3)
    bench.breakpoint = Breakpoint("admission", 7)  # from code: the controls follow
    assert (bench.controls.until.value, bench.controls.until_request.value) == ("admission", "7")
    with pytest.raises(ValueError, match="choose one of"):
        Breakpoint("eviction")


async def until(condition, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)
