"""The HF oracle (nanovllm/testing/hf_oracle.py) can fail: each of its three checks (tokens,
logprobs within 1e-4, top logprobs led by the chosen token) rejects an output doctored to break it,
and the undoctored output passes."""

from __future__ import annotations

import copy

import pytest

from nanovllm import LLM, SamplingParams
from nanovllm.testing.hf_oracle import (
    MAX_NEW_TOKENS,
    TOP_LOGPROBS,
    assert_outputs_match,
    hf_model,
    oracle_prompts,
)


@pytest.fixture(scope="module")
def checked(tiny_model):
    model = hf_model(tiny_model)
    prompts = oracle_prompts(model.config.vocab_size)[:2]
    params = SamplingParams(
        temperature=0, max_tokens=MAX_NEW_TOKENS, ignore_eos=True, logprobs=TOP_LOGPROBS
    )
    with LLM(tiny_model, kvcache_block_size=16) as llm:
        outs = llm.generate(prompts, params, use_tqdm=False)
    return model, prompts, outs


def _wrong_token(out):
    out["token_ids"][-1] = (out["token_ids"][-1] + 1) % 400 + 3


def _logprob_off(out):
    out["logprobs"][3] -= 2e-3  # 20x the tolerance


def _chosen_not_the_top(out):
    top = out["top_logprobs"][5]
    chosen = out["token_ids"][5]
    top[chosen] = min(top.values()) - 1.0


def _too_few_top(out):
    out["top_logprobs"][0] = dict(list(out["top_logprobs"][0].items())[:1])


def test_true_outputs_pass(checked):
    assert_outputs_match(*checked)


@pytest.mark.parametrize(
    "doctor, message",
    [
        (_wrong_token, "prompt 1: tokens"),
        (_logprob_off, "prompt 1: logprobs differ"),
        (_chosen_not_the_top, "prompt 1, token 5: top logprobs"),
        (_too_few_top, "prompt 1, token 0: top logprobs"),
    ],
    ids=["token", "logprob", "top-1", "top-k size"],
)
def test_each_check_rejects_a_doctored_output(checked, doctor, message):
    model, prompts, outs = checked
    outs = copy.deepcopy(outs)
    doctor(outs[1])
    with pytest.raises(AssertionError, match=message):
        assert_outputs_match(model, prompts, outs)
