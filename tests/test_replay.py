"""What-if replay (nanovllm/replay.py): recording a workload as it arrives, and
running it again on a fresh engine with the same or other settings."""

from __future__ import annotations

import gc
import random

import pytest

from nanovllm import LLM, SamplingParams
from nanovllm.replay import RunSummary, WorkloadRecorder, replay, schedule

CONFIG = dict(kvcache_block_size=16, num_kvcache_blocks=48, max_model_len=256)


def _prompt(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(10, 400) for _ in range(n)]


def recorded_run(model: str, **config):
    """Six requests, two of them arriving later, stepped by hand; returns (recorder, records)."""
    rng = random.Random(0)
    greedy = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True)
    with LLM(model, **{**CONFIG, **config}) as llm:
        rec = WorkloadRecorder(llm)
        records = []
        llm.subscribe(rec)
        llm.subscribe(records.append)
        for n in (40, 20, 70, 33):
            llm.add_request(_prompt(rng, n), greedy)
        for _ in range(5):
            llm.step()
        llm.add_request(_prompt(rng, 50), greedy)
        llm.add_request(_prompt(rng, 25), SamplingParams(temperature=0, max_tokens=8, n=2))
        while llm.has_unfinished():
            llm.step()
    return rec, records


def test_the_recorder_keeps_each_request_with_its_arrival_step(tiny_model):
    rec, records = recorded_run(tiny_model)
    steps = [a.step for a in rec.workload]
    assert steps == [0, 0, 0, 0, 5, 5]
    assert [len(a.prompt_token_ids) for a in rec.workload] == [40, 20, 70, 33, 50, 25]
    assert rec.workload[-1].params.n == 2 and rec.workload[0].params.max_tokens == 24
    assert rec.missed == 0 and rec.first_step == records[0].step
    # every sequence of the run is named by (arrival, sample), the two samples of the last one too
    seq_ids = {i for r in records for i in r.seq_ids}
    assert set(rec.keys) == seq_ids and sorted(rec.keys.values())[-2:] == [(5, 0), (5, 1)]


def test_replay_with_the_same_settings_schedules_every_step_the_same(tiny_model):
    rec, records = recorded_run(tiny_model)
    again = replay(rec.workload, tiny_model, **CONFIG)
    assert again.schedule == schedule(records, rec.keys)
    assert again.summary.row() == {
        **RunSummary.of(records).row(),
        "step_time": again.summary.step_time,
    }


def test_replay_with_fewer_blocks_preempts_more(tiny_model):
    rec, records = recorded_run(tiny_model)
    recorded = RunSummary.of(records)
    small = replay(rec.workload, tiny_model, **{**CONFIG, "num_kvcache_blocks": 16})
    assert recorded.preemptions == 0
    assert small.summary.preemptions > recorded.preemptions
    assert small.summary.prefill_tokens > recorded.prefill_tokens  # recomputes
    assert small.summary.finished == recorded.finished == 7
    # preemption recomputes; greedy tokens do not change
    roomy = replay(rec.workload, tiny_model, **CONFIG)
    assert small.outputs == roomy.outputs and len(small.outputs) == 7
    assert small.summary.series["preemptions"][-1] == small.summary.preemptions


def test_replay_closes_its_engine(tiny_model, monkeypatch):
    import nanovllm.llm as llm_module

    made = []
    original = llm_module.LLM.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(llm_module.LLM, "__init__", spy)
    rec, _ = recorded_run(tiny_model)
    made.clear()
    replay(rec.workload, tiny_model, **CONFIG)
    assert len(made) == 1 and made[0].closed
    with pytest.raises(RuntimeError, match="max_steps"):
        replay(rec.workload, tiny_model, max_steps=3, **CONFIG)
    assert made[-1].closed
    gc.collect()
