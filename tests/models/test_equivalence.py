"""The correctness oracle: Hugging Face transformers on the same weights, in float32 on CPU."""

from __future__ import annotations

import random

import pytest
import torch

from nanovllm import LLM, SamplingParams

MAX_NEW = 12


def prompts_for(vocab: int) -> list[list[int]]:
    rng = random.Random(0)
    return [[rng.randrange(3, vocab) for _ in range(n)] for n in (1, 5, 17, 33, 64)]


def hf_model(path: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def hf_greedy(model, prompt: list[int]) -> list[int]:
    out = model.generate(
        torch.tensor([prompt]),
        do_sample=False,
        max_new_tokens=MAX_NEW,
        min_new_tokens=MAX_NEW,
        pad_token_id=0,
    )
    return out[0, len(prompt) :].tolist()


def hf_logprobs(model, prompt: list[int], completion: list[int]) -> torch.Tensor:
    """Teacher-forced log-probabilities of ``completion`` under the HF model."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion])).logits[0].float()
    lps = logits.log_softmax(-1)[len(prompt) - 1 : -1]
    return lps[torch.arange(len(completion)), torch.tensor(completion)]


@pytest.mark.parametrize("which", ["tiny_model", "second_model"])
def test_greedy_tokens_and_logprobs_match_transformers(which, request):
    path = request.getfixturevalue(which)
    model = hf_model(path)
    prompts = prompts_for(model.config.vocab_size)
    params = SamplingParams(temperature=0, max_tokens=MAX_NEW, ignore_eos=True, logprobs=3)
    with LLM(path, kvcache_block_size=16) as llm:
        outs = llm.generate(prompts, params, use_tqdm=False)
    for prompt, out in zip(prompts, outs):
        assert out["token_ids"] == hf_greedy(model, prompt)
        ref = hf_logprobs(model, prompt, out["token_ids"])
        torch.testing.assert_close(torch.tensor(out["logprobs"]), ref, atol=1e-4, rtol=1e-4)
        for chosen, top in zip(out["token_ids"], out["top_logprobs"]):
            assert len(top) == 3 and max(top, key=top.get) == chosen  # greedy picks the top-1


def test_text_prompts_round_trip_through_the_tokenizer(tiny_model):
    with LLM(tiny_model, kvcache_block_size=16) as llm:
        [out] = llm.generate(
            "The KV cache is paged", SamplingParams(temperature=0, max_tokens=4), use_tqdm=False
        )
        assert isinstance(out["text"], str) and len(out["token_ids"]) <= 4
        assert out["text"] == llm.tokenizer.decode(out["token_ids"], skip_special_tokens=True)
