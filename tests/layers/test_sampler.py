"""Sampler: filters keep exactly the right tokens; draws follow the distribution; seeds repeat."""

from __future__ import annotations

import pytest
import torch

from nanovllm.engine.runner.model_runner import sampler_output
from nanovllm.layers.sampler import Sampler, _top_k_top_p
from nanovllm.layers.sampling_batch import SamplingBatch


def draw(sampler: Sampler, logits: torch.Tensor, batch: SamplingBatch):
    """What the runner does with the sampler's tensors: core's SamplerOutput, on the host."""
    return sampler_output(sampler.sample(logits, batch))


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
    out = draw(Sampler(torch.device("cpu")), logits, batch(4, temperature=0.0, logprobs=2))
    assert out.token_ids == logits.argmax(-1).tolist()
    ref = logits.log_softmax(-1).max(-1).values
    torch.testing.assert_close(torch.tensor(out.logprobs), ref)
    assert all(len(t) == 2 for t in out.top_logprobs)


def test_samples_follow_the_distribution():
    probs = torch.tensor([0.6, 0.3, 0.1])
    logits = probs.log().expand(4000, 3).clone()
    out = draw(Sampler(torch.device("cpu"), seed=1), logits, batch(4000))
    freq = torch.bincount(torch.tensor(out.token_ids), minlength=3).float() / 4000
    assert torch.allclose(freq, probs, atol=0.03)


def test_seeded_rows_repeat_whatever_the_batch():
    logits = torch.randn(6, 100)
    logits[2] = logits[0]
    sampler = Sampler(torch.device("cpu"))
    seeded = SamplingBatch(
        [1.0] * 6, [None] * 6, [1.0] * 6, [7, None, 7, None, 8, 7], [3, 3, 3, 3, 3, 4], [None] * 6
    )
    a = draw(sampler, logits, seeded).token_ids
    b = draw(sampler, logits[[0]], batch(1, seed=7, position=3)).token_ids
    assert a[0] == a[2] == b[0]  # same seed, same position, same logits


def test_penalties_by_hand():
    """vLLM's formulas on a 6-token vocabulary, computed by hand."""
    from nanovllm.layers.sampler import logits_processing
    from nanovllm.layers.sampling_batch import PenaltyRow

    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0, -2.0, 1.0]] * 2)
    b = batch(2, temperature=0.0)
    b.penalties = [PenaltyRow(1, 2.0, 0.5, 0.25, [0, 1], [3, 3, 4])]  # row 0: none
    out = logits_processing(logits, b)
    assert out[0].tolist() == logits[0].tolist()
    # token 0 (prompt, +): 2/2; 1 (prompt, -): -1*2; 2 unseen; 3 (output x2, +): 3/2 - 0.25*2 - 0.5;
    # 4 (output x1, -): -2*2 - 0.25 - 0.5; 5 unseen
    assert out[1].tolist() == [1.0, -2.0, 0.5, 0.5, -4.75, 1.0]
    assert logits[1, 0] == 2.0  # the raw logits are untouched


def test_bans_and_raw_logprobs_and_ranks():
    from nanovllm.layers.sampling_batch import PenaltyRow

    logits = torch.tensor([[0.0, 5.0, 1.0, 2.0], [0.0, 5.0, 1.0, 2.0]])
    b = batch(2, temperature=0.0, logprobs=1)
    b.bans = [(0, (1, 3))]  # row 0 may not pick 1 or 3 (min_tokens not reached)
    b.penalties = [PenaltyRow(1, 10.0, 0.0, 0.0, [1], [])]  # row 1: token 1 -> 0.5
    out = draw(Sampler(torch.device("cpu")), logits, b)
    assert out.token_ids == [2, 3]
    assert out.finite == [True, True]  # a banned logit is not a NaN/inf row
    raw = logits.log_softmax(-1)
    assert out.logprobs == pytest.approx([raw[0, 2].item(), raw[1, 3].item()])  # raw logprobs
    assert out.ranks == [3, 2]  # ranks among the raw logits: 5 > 2 > 1 > 0
    assert out.top_logprobs[0] == {1: pytest.approx(raw[0, 1].item())}


def test_penalties_apply_to_sampled_rows_too():
    from nanovllm.layers.sampling_batch import PenaltyRow

    logits = torch.tensor([[0.0, 8.0, 7.9]]).expand(200, 3).contiguous()
    b = batch(200, temperature=0.5)
    b.penalties = [PenaltyRow(i, 1.0, 2.0, 0.0, [], [1]) for i in range(200)]  # 8 -> 6
    out = draw(Sampler(torch.device("cpu"), seed=0), logits, b)
    assert out.token_ids.count(2) > 190  # 7.9 vs 6 at T=0.5: token 2 wins ~98% of draws


def test_fused_gpu_pass_samples_from_the_processed_logits():
    """The fused Triton pass (CUDA, or the interpreter) and the torch path agree on greedy rows
    with penalties and bans; log-probabilities stay the raw ones on both."""
    import os

    from nanovllm.layers.sampling_batch import PenaltyRow

    pytest.importorskip("triton")
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs CUDA, or TRITON_INTERPRET=1 set before triton is imported")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    logits = torch.randn(4, 300, generator=torch.Generator().manual_seed(0)).to(device)
    top = logits.argmax(-1).tolist()
    b = batch(4, temperature=0.0, logprobs=0)
    b.penalties = [
        PenaltyRow(0, 50.0, 0.0, 0.0, [top[0]], []),
        PenaltyRow(2, 1.0, 0.0, 2.0, [], [top[2]] * 5),
    ]
    b.bans = [(1, (top[1],))]
    fused = draw(Sampler(device, fused=True), logits, b)
    plain = draw(Sampler(device, fused=False), logits, b)
    assert fused.token_ids == plain.token_ids
    assert all(t != top[i] for i, t in enumerate(fused.token_ids[:3]))  # rows 0-2 were steered
    assert fused.token_ids[3] == top[3] and fused.finite == [True] * 4
    torch.testing.assert_close(torch.tensor(fused.logprobs), torch.tensor(plain.logprobs))
