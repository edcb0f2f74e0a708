"""Sampled speculative decoding keeps the target's distribution, and seeded requests stay
reproducible whatever their batch.

The distribution test: 3000 samples of the same week prompt at temperature 2 with and without
n-gram drafts (k = 3; about half the draft tokens are accepted); the distribution of the 4th
generated token (token 1 comes from the prefill, never from a draft; token 4 follows up to three
verifications) and the joint distribution of tokens 2..4 are compared with chi-square tests of
homogeneity. Seeded engines, so the p-values are the same on every run (token 4: p = 0.58,
df 54; tokens 2..4: p = 0.94, df 9, on the machine that wrote this). A rule that accepts every
draft is rejected by the same test (its power, on the same data size).
"""

from __future__ import annotations

import collections

import pytest
import torch

from nanovllm import LLM, SamplingParams
from nanovllm.engine.core import sample_writer

PROMPT = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday Monday Tuesday"
SPEC = {"method": "ngram", "num_speculative_tokens": 3}
N = 3000


def continuations(model: str, spec: dict | None, seed: int) -> tuple[list[list[int]], float]:
    """N samples' token ids, and the draft acceptance rate."""
    params = SamplingParams(temperature=2.0, max_tokens=4, ignore_eos=True)
    with LLM(model, speculative_config=spec, seed=seed) as llm:
        outs = llm.generate([PROMPT] * N, params, use_tqdm=False)
        rate = llm.get_metrics()["spec_decode_acceptance_rate"]
    return [o["token_ids"] for o in outs], rate


def fourth(samples: list[list[int]]) -> collections.Counter:
    return collections.Counter(t[3] for t in samples)


def joint(samples: list[list[int]]) -> collections.Counter:
    return collections.Counter(tuple(t[1:4]) for t in samples)


def chi_square_p(a: collections.Counter, b: collections.Counter) -> tuple[float, float, int]:
    """Chi-square test of homogeneity of two samples of categories; categories expected fewer
    than 5 times in either sample are pooled into one. Returns (statistic, p-value, df)."""
    na, nb = sum(a.values()), sum(b.values())
    keys = sorted(set(a) | set(b))
    rows, other = [], [0, 0]
    for key in keys:
        total = a[key] + b[key]
        if min(total * na, total * nb) / (na + nb) < 5:
            other[0] += a[key]
            other[1] += b[key]
        else:
            rows.append((a[key], b[key]))
    if sum(other):
        rows.append(tuple(other))
    stat = 0.0
    for ca, cb in rows:
        total = ca + cb
        for observed, n in ((ca, na), (cb, nb)):
            expected = total * n / (na + nb)
            stat += (observed - expected) ** 2 / expected
    df = len(rows) - 1
    p = torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), torch.tensor(stat / 2))
    return stat, float(p), df


@pytest.mark.slow
def test_chi_square_next_tokens_unchanged_by_speculation(teaching_model, monkeypatch):
    plain, _ = continuations(teaching_model, None, seed=1)
    spec, rate = continuations(teaching_model, SPEC, seed=2)
    assert 0.3 < rate < 0.9, rate  # both acceptances and rejections are tested
    for name, categories in (("4th token", fourth), ("tokens 2..4", joint)):
        stat, p, df = chi_square_p(categories(plain), categories(spec))
        print(f"{name}: chi-square {stat:.1f}, df {df}, p = {p:.3f}")
        assert df >= 5
        assert p > 0.01

    # the same test rejects a wrong rule: accepting every draft token
    def accept_all(draft, targets):
        return tuple(draft) + targets[len(draft) :]

    monkeypatch.setattr(sample_writer, "accepted_tokens", accept_all)
    wrong, _ = continuations(teaching_model, SPEC, seed=2)
    assert chi_square_p(fourth(plain), fourth(wrong))[1] < 1e-6


def test_seeded_requests_reproducible_whatever_the_batch(teaching_model):
    seeded = SamplingParams(temperature=1.2, max_tokens=24, seed=7, ignore_eos=True)
    other = SamplingParams(temperature=1.0, max_tokens=30, ignore_eos=True)
    with LLM(teaching_model, speculative_config=SPEC) as llm:
        alone = llm.generate([PROMPT], seeded, use_tqdm=False)[0]["token_ids"]
        batch = llm.generate(
            ["one two three", PROMPT, "a b c d"], [other, seeded, other], use_tqdm=False
        )
        assert batch[1]["token_ids"] == alone
        assert llm.get_metrics()["spec_decode_num_drafts"] > 0
