"""The correctness oracle (nanovllm/testing/hf_oracle.py): Hugging Face transformers on the same
weights, in float32 on CPU, on the tiny model (or ``NANOVLLM_MODEL``) and a second head layout."""

from __future__ import annotations

import pytest

from nanovllm import LLM, SamplingParams
from nanovllm.testing.hf_oracle import assert_matches_transformers


@pytest.mark.parametrize("which", ["tiny_model", "second_model"])
def test_greedy_tokens_and_logprobs_match_transformers(which, request):
    assert_matches_transformers(request.getfixturevalue(which), kvcache_block_size=16)


def test_text_prompts_round_trip_through_the_tokenizer(tiny_model):
    with LLM(tiny_model, kvcache_block_size=16) as llm:
        [out] = llm.generate(
            "The KV cache is paged", SamplingParams(temperature=0, max_tokens=4), use_tqdm=False
        )
        assert isinstance(out["text"], str) and len(out["token_ids"]) <= 4
        assert out["text"] == llm.tokenizer.decode(out["token_ids"], skip_special_tokens=True)
