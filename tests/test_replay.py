"""What-if replay (nanovllm/replay.py): recording a workload as it arrives, and
running it again on a fresh engine with the same or other settings (speculative decoding on or
off among them)."""

from __future__ import annotations

import gc
import random

import pytest

from nanovllm import LLM, SamplingParams
from nanovllm.replay import RunSummary, WorkloadRecorder, replay, schedule

CONFIG = dict(kvcache_block_size=16, num_kvcache_blocks=48, max_model_len=256)


def _prompt(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(10, 400) for _ in range(n)]


def recorded_run(model: str, prompts: list | None = None, **config):
    """Six requests (``prompts``, else random ones), the last two arriving after five steps, the
    last with n=2, stepped by hand; returns (recorder, records)."""
    rng = random.Random(0)
    prompts = prompts or [_prompt(rng, n) for n in (40, 20, 70, 33, 50, 25)]
    greedy = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True)
    with LLM(model, **{**CONFIG, **config}) as llm:
        rec = WorkloadRecorder(llm)
        records = []
        llm.subscribe(rec)
        llm.subscribe(records.append)
        for prompt in prompts[:4]:
            llm.add_request(prompt, greedy)
        for _ in range(5):
            llm.step()
        llm.add_request(prompts[4], greedy)
        llm.add_request(prompts[5], SamplingParams(temperature=0, max_tokens=8, n=2))
        while llm.has_unfinished():
            llm.step()
    return rec, records


def without_time(summary: RunSummary) -> dict:
    """The totals of a run but its step time (wall time: never the same twice)."""
    return {k: v for k, v in summary.row().items() if k != "step_time"}


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
    assert without_time(again.summary) == without_time(RunSummary.of(records))


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


SPEC = {"method": "ngram", "num_speculative_tokens": 3}
WEEK = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday Monday Tuesday"
TEACHING_PROMPTS = [WEEK, "one two three four five six", "a b c d e f g", "7 x 4 = 28, 7 x 5 = 35,"]


def drafted(records) -> list[tuple]:
    """Each drafting step's drafts, accepted counts and rolled-back slots."""
    return [(r.drafts, r.num_accepted, r.rolled_back_slots) for r in records if r.drafts]


def test_a_run_with_speculation_replays_step_for_step(teaching_model):
    """Drafts, verification and rollback replay as recorded: the same rows every step (a decode
    with a draft schedules 1 + k tokens), the same drafts accepted and slots rolled back, the same
    tokens, preemptions included; replayed without speculation, the same greedy tokens in more
    steps."""
    prompts = [*TEACHING_PROMPTS, WEEK, "January February March April"]
    # 8 x 16 slots for six requests of up to 128 tokens: it preempts
    small = dict(num_kvcache_blocks=8, max_model_len=128, speculative_config=SPEC)
    rec, records = recorded_run(teaching_model, prompts, **small)
    recorded = {rec.keys[i]: tokens for r in records for i, tokens in r.finished_outputs}
    assert sum(r.num_drafts for r in records) > 0 and sum(map(len, recorded.values())) > 0
    assert RunSummary.of(records).preemptions > 0 and rec.missed == 0
    again = replay(rec.workload, teaching_model, **{**CONFIG, **small})
    assert again.schedule == schedule(records, rec.keys)
    assert again.outputs == recorded and len(recorded) == 7
    assert drafted(again.records) == drafted(records)
    assert any(r.num_accepted_tokens for r in records)
    assert any(any(r.rolled_back_slots) for r in records)  # rejections rolled back, too
    assert without_time(again.summary) == without_time(RunSummary.of(records, speculative=True))
    plain = replay(rec.workload, teaching_model, **{**CONFIG, **small, "speculative_config": None})
    assert plain.outputs == recorded
    assert plain.summary.steps > again.summary.steps


def test_a_summary_has_the_speculation_figures_only_with_speculation(teaching_model):
    """With a speculative_config the summary adds the tokens drafted and accepted, the acceptance
    rate and the mean acceptance length (the metrics' figures, from the same records: checked
    here against the records' drafts by hand); without one, none of them (None, not 0)."""
    spec = dict(max_model_len=128, speculative_config=SPEC)
    rec, records = recorded_run(teaching_model, [*TEACHING_PROMPTS, WEEK, WEEK], **spec)
    summary = RunSummary.of(records, speculative=True)
    drafts = [d for r in records for d in r.drafts if d]
    accepted = sum(a for r in records for a in r.num_accepted)
    assert summary.draft_tokens == sum(map(len, drafts)) > 0
    assert summary.accepted_tokens == accepted > 0
    assert summary.acceptance_rate == pytest.approx(accepted / summary.draft_tokens)
    assert summary.mean_acceptance_length == pytest.approx(1 + accepted / len(drafts))
    assert summary.speculative and 0 < summary.acceptance_rate <= 1
    row = summary.row()
    assert row["draft_tokens"] == summary.draft_tokens and "series" not in row
    again = replay(rec.workload, teaching_model, **{**CONFIG, **spec})
    assert again.summary.speculative  # the replay's engine drafts too: the same figures
    assert again.summary.acceptance_rate == summary.acceptance_rate
    plain = replay(rec.workload, teaching_model, **{**CONFIG, **spec, "speculative_config": None})
    figures = ("draft_tokens", "accepted_tokens", "acceptance_rate", "mean_acceptance_length")
    assert not plain.summary.speculative
    assert all(getattr(plain.summary, k) is None for k in figures)
    assert all(getattr(RunSummary.of(records), k) is None for k in figures)  # not said: none
