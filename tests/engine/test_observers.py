"""Observers (engine/observers.py): every observer sees every record; an observer's exception is
raised once its step is complete, by the engine's step methods as itself, by ``generate`` and the
streams as ``ObserverError`` after their requests ran to the end, so no output is lost."""

from __future__ import annotations

import asyncio

import pytest

from nanovllm import LLM, SamplingParams
from nanovllm.engine.core.batch import ScheduledBatch, StepOutcome
from nanovllm.engine.core.block_manager import BlockManager
from nanovllm.engine.core.events import StepTiming, step_record
from nanovllm.engine.observers import ObserverFailure, Observers
from nanovllm.errors import ObserverError

PROMPTS = [[5, 6, 7], list(range(20, 45)), [9, 8]]
PARAMS = [SamplingParams(temperature=0, max_tokens=m, ignore_eos=True) for m in (3, 9, 6)]
STREAM_PARAMS = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)


def record(step: int):
    batch = ScheduledBatch(step=step)
    outcome = StepOutcome((), (), (), (), 0, 0, 0.0)
    return step_record(batch, outcome, BlockManager(4, 16).usage(), StepTiming())


def test_notify_keeps_the_first_error_and_every_observer_sees_the_record():
    obs, seen = Observers(), []

    def bad(r):
        raise ValueError(f"bad {r.step}")

    obs.subscribe(bad)
    obs.subscribe(lambda r: seen.append(r.step))
    obs.notify(record(3))
    obs.notify(record(4))  # a second error before the raise: the first one is kept
    assert seen == [3, 4]
    with pytest.raises(ValueError, match="bad 3"):
        obs.raise_pending()
    obs.raise_pending()  # forgotten once raised


def test_deferred_collects_instead_of_raising_and_nests():
    obs = Observers()
    unsubscribe = obs.subscribe(lambda r: 1 / 0)
    into: list[ObserverFailure] = []
    with obs.deferred(into):
        obs.notify(record(1))
        obs.raise_pending()
        with obs.deferred(None):  # None keeps the outer list
            obs.notify(record(2))
            obs.raise_pending()
    assert [f.step for f in into] == [1, 2]
    assert all(isinstance(f.error, ZeroDivisionError) for f in into)
    obs.notify(record(3))
    with pytest.raises(ZeroDivisionError):  # outside: raised again
        obs.raise_pending()
    unsubscribe()
    obs.notify(record(4))
    obs.raise_pending()


def test_an_interrupt_is_not_kept_it_leaves_at_once():
    obs = Observers()

    def interrupt(r):
        raise KeyboardInterrupt

    obs.subscribe(interrupt)
    with pytest.raises(KeyboardInterrupt):
        obs.notify(record(0))


@pytest.fixture(scope="module", params=[False, True], ids=["overlap off", "overlap on"])
def llm(request, tiny_model):
    with LLM(
        tiny_model,
        kvcache_block_size=16,
        overlap_scheduling=request.param,
        attention_backend="torch_ref",
        dtype="float32",
    ) as engine:
        yield engine


def completions(outputs) -> list:
    return [(c.token_ids, c.text, c.finish_reason) for o in outputs for c in o.outputs]


class FailAt:
    """An observer that raises on the ``k``-th record it sees (0-based) in this call."""

    def __init__(self, k: int | None):
        self.k, self.steps = k, []

    def __call__(self, r) -> None:
        self.steps.append(r.step)
        if len(self.steps) - 1 == self.k:
            raise ValueError(f"observer bug at step {r.step}")


def reference(llm, run):
    """``run()``'s result and how many records its steps made, with no observer failing."""
    llm.reset_prefix_cache()
    counter = FailAt(None)
    off = llm.subscribe(counter)
    try:
        return run(), len(counter.steps)
    finally:
        off()


def failing(llm, run, where: str, num_records: int):
    """``run()`` with an observer failing at the ``where`` record, and one subscribed after it
    that counts what it saw; returns the ObserverError, the failing observer, the counter."""
    k = {"first": 0, "middle": num_records // 2, "last": num_records - 1}[where]
    llm.reset_prefix_cache()
    bad, after = FailAt(k), FailAt(None)
    offs = [llm.subscribe(bad), llm.subscribe(after)]
    try:
        with pytest.raises(ObserverError) as info:
            run()
    finally:
        for off in offs:
            off()
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.steps == [bad.steps[k]]
    assert after.steps == bad.steps and len(after.steps) == num_records  # nothing skipped
    assert not llm.has_unfinished() and llm.check_integrity() == []
    assert llm.step_loop.in_flight is None
    return info.value


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_generate_runs_to_the_end_then_raises_with_every_output(llm, where):
    def run():
        return llm.generate(PROMPTS, PARAMS, use_tqdm=False)

    expected, n = reference(llm, run)
    assert n >= 9  # the longest request decodes 9 tokens: a middle step exists
    error = failing(llm, run, where, n)
    assert completions(error.outputs) == completions(expected)
    assert [len(c[0]) for c in completions(error.outputs)] == [3, 9, 6]
    assert completions(run()) == completions(expected)  # the engine goes on as before


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_stream_delivers_every_delta_then_raises_with_its_output(llm, where):
    def run():
        stream, deltas = llm.stream(PROMPTS[1], STREAM_PARAMS), []
        try:
            for delta in stream:
                deltas.append(delta)
        finally:
            run.deltas, run.output = deltas, stream.output
        return stream.output

    expected, n = reference(llm, run)
    text = "".join(run.deltas)
    assert text == expected.outputs[0].text and n >= 8
    error = failing(llm, run, where, n)
    assert "".join(run.deltas) == text  # every delta before the error
    assert error.outputs == [run.output]
    assert completions(error.outputs) == completions([expected])
    assert completions([run()]) == completions([expected])


def test_an_async_stream_raises_after_its_last_delta(llm):
    async def collect(deltas):
        async for delta in llm.astream(PROMPTS[0], STREAM_PARAMS):
            deltas.append(delta)

    expected = []
    asyncio.run(collect(expected))
    bad = FailAt(2)
    off = llm.subscribe(bad)
    deltas = []
    try:
        with pytest.raises(ObserverError) as info:
            asyncio.run(collect(deltas))
    finally:
        off()
    assert deltas == expected and info.value.outputs[0].outputs[0].text == "".join(expected)
    assert not llm.has_unfinished()


def test_requests_of_others_go_on_and_step_raises_as_itself(llm):
    """A request added with add_request is not this generate's: it keeps running (generate
    drives it too) and its output waits for its owner; a plain step() raises the observer's
    exception itself, after the step completed."""
    other = llm.add_request(PROMPTS[1], PARAMS[1])
    bad = FailAt(1)
    off = llm.subscribe(bad)
    try:
        with pytest.raises(ObserverError) as info:
            llm.generate(PROMPTS[:1], PARAMS[:1], use_tqdm=False)
        assert len(info.value.outputs) == 1
        bad.k, bad.steps = 0, []
        with pytest.raises(ValueError, match="observer bug"):
            llm.step()
    finally:
        off()
    while llm.has_unfinished():
        llm.step()
    assert len(llm.get_output(other).outputs[0].token_ids) == 9
