"""Sampler: filters keep exactly the right tokens; draws follow the distribution; seeds repeat."""

from __future__ import annotations

import torch

from nanovllm.engine.runner.inputs import SamplingBatch
from nanovllm.layers.sampler import Sampler, _top_k_top_p


def batch(n, temperature=1.0, top_k=None, top_p=1.0, seed=None, logprobs=None, position=0):
    return SamplingBatch(
        [temperature] * n, [top_k] * n, [top_p] * n, [seed] * n, [position] * n, [logprobs] * n
    )


def test_top_k_and_top_p_keep_exactly_the_expected_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]] * 3))
    out = _top_k_top_p(logits, [2, None, 4], [1.0, 0.8, 0.6])
    kept = (out > float("-inf")).tolist()
    assert kept[0] == [True, True, False, False, False]  # top-2
    assert kept[1] == [True, True, True, False, False]  # 0.5 + 0.2 < 0.8 <= 0.85
    assert kept[2] == [True, True, False, False, False]  # top-p 0.6 within top-4


def test_greedy_is_argmax_and_logprobs_are_log_softmax():
    logits = torch.randn(4, 50)
    out = Sampler(torch.device("cpu"))(logits, batch(4, temperature=0.0, logprobs=2))
    assert out.token_ids == logits.argmax(-1).tolist()
    ref = logits.log_softmax(-1).max(-1).values
    torch.testing.assert_close(torch.tensor(out.logprobs), ref)
    assert all(len(t) == 2 for t in out.top_logprobs)


def test_samples_follow_the_distribution():
    probs = torch.tensor([0.6, 0.3, 0.1])
    logits = probs.log().expand(4000, 3).clone()
    out = Sampler(torch.device("cpu"), seed=1)(logits, batch(4000))
    freq = torch.bincount(torch.tensor(out.token_ids), minlength=3).float() / 4000
    assert torch.allclose(freq, probs, atol=0.03)


def test_seeded_rows_repeat_whatever_the_batch():
    logits = torch.randn(6, 100)
    logits[2] = logits[0]
    sampler = Sampler(torch.device("cpu"))
    seeded = SamplingBatch(
        [1.0] * 6, [None] * 6, [1.0] * 6, [7, None, 7, None, 8, 7], [3, 3, 3, 3, 3, 4], [None] * 6
    )
    a = sampler(logits, seeded).token_ids
    b = sampler(logits[[0]], batch(1, seed=7, position=3)).token_ids
    assert a[0] == a[2] == b[0]  # same seed, same position, same logits
