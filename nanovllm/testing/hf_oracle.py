"""The correctness oracle: Hugging Face transformers on the same weights, in float32 on CPU.

``assert_matches_transformers(path, **llm_kwargs)`` checks a checkpoint of any supported family
(a tiny random one, or your own: ``NANOVLLM_MODEL=... pytest tests/models/test_equivalence.py``)::

    oracle_prompts(vocab)  --nanovllm LLM(path, **llm_kwargs), greedy, 3 top logprobs-->  outs
                           --transformers generate(do_sample=False) / teacher forcing-->  reference

and raises ``AssertionError`` naming the prompt unless, for every prompt: the completion equals
``generate``'s token for token, each token's logprob equals the HF log-softmax within 1e-4
(absolute and relative, float32), and each step's top logprobs hold 3 entries whose largest is
the chosen token. ``assert_outputs_match`` is the same check on outputs you generated yourself.
"""

from __future__ import annotations

import random
from typing import Any

import torch

MAX_NEW_TOKENS = 12
TOP_LOGPROBS = 3
TOLERANCE = 1e-4  # float32 on CPU: both sides compute the same math in another order
PROMPT_LENGTHS = (1, 5, 17, 33, 64)


def oracle_prompts(vocab_size: int, seed: int = 0) -> list[list[int]]:
    """Random token-id prompts of mixed lengths (ids from 3 up: below are special tokens)."""
    rng = random.Random(seed)
    return [[rng.randrange(3, vocab_size) for _ in range(n)] for n in PROMPT_LENGTHS]


def hf_model(path: str):
    """The checkpoint under transformers, float32, in eval mode."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def hf_greedy(model, prompt: list[int], max_new_tokens: int = MAX_NEW_TOKENS) -> list[int]:
    """transformers' greedy completion of exactly ``max_new_tokens`` tokens (EOS ignored)."""
    out = model.generate(
        torch.tensor([prompt]),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        min_new_tokens=max_new_tokens,
        pad_token_id=0,
    )
    return out[0, len(prompt) :].tolist()


def hf_logprobs(model, prompt: list[int], completion: list[int]) -> torch.Tensor:
    """Teacher-forced log-probabilities of ``completion`` under the HF model."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion])).logits[0].float()
    lps = logits.log_softmax(-1)[len(prompt) - 1 : -1]
    return lps[torch.arange(len(completion)), torch.tensor(completion)]


def assert_outputs_match(model, prompts: list[list[int]], outs: list[dict]) -> None:
    """``outs``: nanovllm's greedy outputs of ``prompts`` (``logprobs=TOP_LOGPROBS``, exactly
    ``MAX_NEW_TOKENS`` tokens); raises ``AssertionError`` at the first prompt that disagrees."""
    if len(outs) != len(prompts):
        raise AssertionError(f"{len(outs)} outputs for {len(prompts)} prompts")
    for i, (prompt, out) in enumerate(zip(prompts, outs)):
        tokens = out["token_ids"]
        expected = hf_greedy(model, prompt)
        if tokens != expected:
            raise AssertionError(f"prompt {i}: tokens {tokens} != transformers' {expected}")
        ref = hf_logprobs(model, prompt, tokens)
        torch.testing.assert_close(
            torch.tensor(out["logprobs"]),
            ref,
            atol=TOLERANCE,
            rtol=TOLERANCE,
            msg=lambda m, i=i: f"prompt {i}: logprobs differ from transformers'\n{m}",
        )
        for pos, (chosen, top) in enumerate(zip(tokens, out["top_logprobs"], strict=True)):
            best = max(top, key=top.get) if top else None
            if len(top) != TOP_LOGPROBS or best != chosen:  # greedy picks the top-1
                raise AssertionError(
                    f"prompt {i}, token {pos}: top logprobs {top} should hold {TOP_LOGPROBS} "
                    f"entries led by the chosen token {chosen}"
                )


def assert_matches_transformers(path: str, **llm_kwargs: Any):
    """Generate ``oracle_prompts`` greedily with ``LLM(path, **llm_kwargs)`` and check them with
    ``assert_outputs_match``; returns the HF model (to check more against it)."""
    from nanovllm import LLM, SamplingParams

    model = hf_model(path)
    prompts = oracle_prompts(model.config.vocab_size)
    params = SamplingParams(
        temperature=0, max_tokens=MAX_NEW_TOKENS, ignore_eos=True, logprobs=TOP_LOGPROBS
    )
    with LLM(path, **llm_kwargs) as llm:
        outs = llm.generate(prompts, params, use_tqdm=False)
    assert_outputs_match(model, prompts, outs)
    return model
