"""The fused Gumbel-max sampling kernel (layers/sampling_kernels.py) against its contract.

Greedy rows: torch's argmax, the earliest column on ties (also across chunks). NaN/inf rows are
flagged, float32's lowest finite value is not. Seeded rows draw the same token whatever the batch
and its chunking. Sampled rows follow softmax(logits / T): a chi-square test over many seeds, which
also rejects the wrong temperature (so it can fail). Runs on CPU under TRITON_INTERPRET=1 (set here
when no GPU is visible) on small vocabularies, and on the GPU compiled.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede the first `import triton`
pytest.importorskip("triton")

from nanovllm.layers import sampling_kernels as sk  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _draw(logits: torch.Tensor, temps, seeds) -> tuple[list[int], list[bool]]:
    temps = torch.as_tensor(temps, dtype=torch.float32, device=DEVICE)
    seeds = torch.as_tensor(seeds, dtype=torch.int64, device=DEVICE)
    tokens, bad = sk.gumbel_argmax(logits.to(DEVICE), temps, seeds)
    return tokens.tolist(), bad.tolist()


def chi_square_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """P-value of Pearson's chi-square test of ``counts`` against ``probs``."""
    n = counts.sum()
    expected = n * probs.double()
    stat = ((counts.double() - expected) ** 2 / expected).sum()
    df = torch.tensor((len(probs) - 1) / 2, dtype=torch.float64)
    return float(torch.special.gammaincc(df, stat / 2))


@pytest.mark.parametrize("vocab", [10, 3000])  # one block; several blocks and chunks
def test_greedy_rows_are_argmax_with_the_earliest_column_on_ties(vocab):
    gen = torch.Generator().manual_seed(vocab)
    logits = torch.randn(5, vocab, generator=gen).to(torch.bfloat16)
    top = logits.float().max(dim=1).values
    logits[1, vocab - 1] = logits[1, 3] = top[1] + 1  # tie: the earlier column wins
    logits[2, :] = 0.25  # all tied: column 0
    logits[3, vocab // 2 :] = 9.0  # tie across blocks (and chunks, when there are several)
    tokens, bad = _draw(logits, [0.0] * 5, [7] * 5)
    assert tokens == [int(logits[0].float().argmax()), 3, 0, vocab // 2, int(logits[4].argmax())]
    assert bad == [False] * 5


def test_nan_and_inf_rows_are_flagged_and_the_lowest_finite_logit_is_not():
    logits = torch.randn(5, 40)
    logits[0, 13] = float("nan")
    logits[1, 39] = float("inf")
    logits[2, 0] = float("-inf")
    logits[3, 5] = torch.finfo(torch.float32).min  # a min_tokens ban
    _, bad = _draw(logits, [0.0, 1.0, 0.5, 1.0, 0.0], [1, 2, 3, 4, 5])
    assert bad == [True, True, True, False, False]


def test_a_seeded_row_draws_the_same_token_whatever_its_batch(monkeypatch):
    vocab = 3000  # three blocks of 1024
    gen = torch.Generator().manual_seed(1)
    row = torch.randn(vocab, generator=gen)
    others = torch.randn(7, vocab, generator=gen)
    seeds = [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
    alone = [_draw(row[None], [0.8], [s])[0][0] for s in seeds]
    batch = torch.cat([others[:3], row[None], others[3:]])
    in_batch = [_draw(batch, [0.8] * 8, [s + 1] * 3 + [s] + [s + 2] * 4)[0][3] for s in seeds]
    monkeypatch.setattr(sk, "MIN_PROGRAMS", 2)  # one chunk of two blocks, then one of one
    assert sk._chunk_size(1, vocab, 1024) == 2048
    rechunked = [_draw(row[None], [0.8], [s])[0][0] for s in seeds]
    assert alone == in_batch == rechunked
    assert len(set(alone)) > 1  # different seeds do draw differently


@pytest.mark.slow  # about 10 s interpreted
def test_samples_follow_softmax_over_temperature():
    logits = torch.tensor([0.0, 0.3, 0.6, 0.9])
    n, temp = 600, 0.5
    tokens, _ = _draw(logits.expand(n, 4).contiguous(), [temp] * n, range(1000, 1000 + n))
    counts = torch.bincount(torch.tensor(tokens), minlength=4)
    assert chi_square_p(counts, (logits / temp).softmax(-1)) > 1e-3
    assert chi_square_p(counts, logits.softmax(-1)) < 1e-4  # the wrong temperature is caught


@pytest.mark.slow  # about 15 s interpreted
def test_samples_follow_softmax_across_blocks_and_words():
    """Mass on columns in each quarter of a block (each fed by another Philox word) and in a
    second block; the rest of the row is far below."""
    vocab, cols = 1025, [0, 255, 256, 600, 1023, 1024]
    weights = torch.tensor([0.1, 0.2, 0.15, 0.25, 0.1, 0.2])
    logits = torch.full((vocab,), -1e4)
    logits[cols] = weights.log()
    n = 400
    tokens, _ = _draw(logits.expand(n, vocab).contiguous(), [1.0] * n, range(n))
    assert set(tokens) <= set(cols)
    counts = torch.bincount(torch.tensor([cols.index(t) for t in tokens]), minlength=len(cols))
    assert chi_square_p(counts, weights) > 1e-3
