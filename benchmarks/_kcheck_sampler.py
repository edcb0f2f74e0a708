"""The sampler section of benchmarks/gpu_kernels_check.py: layers/sampling_kernels.py against its
contract and against the baseline kernel (_baseline_sampler.py), at the real vocabulary.

Checks (fresh random logits each): greedy rows == torch's argmax (earliest column on ties, planted
across chunks); NaN/inf rows flagged, float32's lowest finite logit not; a seeded row draws the
same token alone and inside a batch of 256 (other chunk sizes); samples follow softmax(logits/T):
a chi-square test with the mass on columns in different chunks and quarters, and on fully random
logits the sampled token's mean logit against its exact expectation (a z-score), both kernels.
Timing: the whole ``gumbel_argmax`` (kernel + torch's reduction over chunks) as a CUDA graph.
"""

from __future__ import annotations

import torch
from _baseline_sampler import gumbel_argmax as old_gumbel_argmax
from _kcheck import DEVICE, DRY, Report, graph_time

from nanovllm.layers.sampling_kernels import gumbel_argmax as new_gumbel_argmax

VOCAB = 3000 if DRY else 151936
BATCHES = (1, 2, 4) if DRY else (1, 2, 4, 8, 16, 256)
CALLS = 2 if DRY else 64  # launches of BIG rows for the statistical checks
BIG = 16 if DRY else 256
TEMP = 0.6  # bench.py's temperature


def _draw(fn, logits, temps, seeds):
    t = torch.as_tensor(temps, dtype=torch.float32, device=DEVICE).expand(len(logits)).contiguous()
    s = torch.as_tensor(seeds, dtype=torch.int64, device=DEVICE)
    return fn(logits, t, s)


def _logits(rows: int, gen: torch.Generator) -> torch.Tensor:
    return (3 * torch.randn(rows, VOCAB, generator=gen, device=DEVICE)).to(torch.bfloat16)


def check_greedy_and_flags(report: Report, gen: torch.Generator) -> None:
    logits = _logits(BIG, gen)
    top = logits.float().max(dim=1).values
    logits[0, VOCAB - 1] = logits[0, 5] = top[0] + 1  # tie across chunks: column 5
    logits[1, :] = 0.5  # all tied: column 0
    bad_rows = [3, 7, BIG - 1]
    logits[3, 11] = float("nan")
    logits[7, VOCAB // 2] = float("inf")
    logits[BIG - 1, 0] = float("-inf")
    logits[4, 9] = torch.finfo(torch.bfloat16).min  # a ban: finite
    tokens, bad = _draw(new_gumbel_argmax, logits, 0.0, range(BIG))
    ok = [r for r in range(BIG) if r not in bad_rows]
    want = logits.float().argmax(dim=1)  # torch: the first maximal index
    same = int((tokens[ok] == want[ok]).sum())
    report.check("sampler", "greedy == argmax", same == len(ok), f"{same}/{len(ok)} rows")
    report.check("sampler", "ties -> earliest", tokens[:2].tolist() == [5, 0], str(tokens[:2]))
    flagged = bad.nonzero().flatten().tolist()
    report.check("sampler", "NaN/inf flagged", flagged == bad_rows, f"{flagged} vs {bad_rows}")


def check_seeded_rows(report: Report, gen: torch.Generator) -> None:
    logits = _logits(BIG, gen)
    seeds = torch.randint(0, 2**62, (BIG,), generator=gen, device=DEVICE)
    batch, _ = _draw(new_gumbel_argmax, logits, TEMP, seeds)
    picked = range(0, BIG, max(BIG // 8, 1))
    alone = [
        int(_draw(new_gumbel_argmax, logits[r : r + 1], TEMP, seeds[r : r + 1])[0]) for r in picked
    ]
    inside = batch[:: max(BIG // 8, 1)].tolist()
    report.check("sampler", "seeded row: alone == in batch", alone == inside, f"{len(alone)} rows")


def chi_square_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = counts.sum() * probs.double()
    stat = ((counts.double() - expected) ** 2 / expected).sum()
    return float(torch.special.gammaincc(torch.tensor((len(probs) - 1) / 2.0).double(), stat / 2))


def check_distribution(report: Report, gen: torch.Generator) -> None:
    cols = [0, 300, 1023, 1024, 2047, VOCAB // 2 + 513, VOCAB - 1]
    weights = torch.tensor([0.1, 0.2, 0.15, 0.05, 0.2, 0.1, 0.2])
    row = torch.full((VOCAB,), -1e4)
    row[cols] = weights.log() * TEMP  # at T: softmax(row / T) = weights
    logits = row.to(DEVICE).expand(BIG, VOCAB).contiguous()
    for name, fn in (("new", new_gumbel_argmax), ("old", old_gumbel_argmax)):
        calls = [_draw(fn, logits, TEMP, range(c * BIG, (c + 1) * BIG))[0] for c in range(CALLS)]
        draws = torch.cat(calls).cpu()
        index = {c: i for i, c in enumerate(cols)}
        stray = sum(int(t) not in index for t in draws)
        counts = torch.bincount(torch.tensor([index.get(int(t), 0) for t in draws]), minlength=7)
        p = chi_square_p(counts, weights)
        ok = stray == 0 and (p > 1e-3 or DRY)
        detail = f"p={p:.3g}, n={len(draws)}"
        report.check("sampler", f"{name}: chi-square over 7 columns", ok, detail)
    # fully random logits at T: the sampled logit's mean against its exact expectation
    logits = _logits(BIG, gen)
    probs = (logits.double() / TEMP).softmax(-1)
    expect = (probs * logits.double()).sum(-1)  # per row
    var = (probs * logits.double() ** 2).sum(-1) - expect**2
    for name, fn in (("new", new_gumbel_argmax), ("old", old_gumbel_argmax)):
        diffs, variance = 0.0, 0.0
        for c in range(CALLS):
            tokens, _ = _draw(fn, logits, TEMP, range(10**6 + c * BIG, 10**6 + (c + 1) * BIG))
            diffs += float((logits.double().gather(1, tokens[:, None])[:, 0] - expect).sum())
            variance += float(var.sum())
        z = diffs / variance**0.5
        detail = f"z={z:+.2f} over {CALLS * BIG} draws"
        report.check(
            "sampler", f"{name}: mean sampled logit (random logits)", abs(z) < 4 or DRY, detail
        )


def time_kernels(report: Report, gen: torch.Generator) -> None:
    for rows in BATCHES:
        logits = _logits(rows, gen)
        temps = torch.full((rows,), TEMP, device=DEVICE)
        seeds = torch.randint(0, 2**62, (rows,), generator=gen, device=DEVICE)
        args = (logits, temps, seeds)
        old = graph_time(lambda args=args: old_gumbel_argmax(*args))
        new = graph_time(lambda args=args: new_gumbel_argmax(*args))
        gbs = rows * VOCAB * 2 / new / 1e9
        report.row("sampler", f"B={rows}", old * 1e6, new * 1e6, f"{gbs:,.0f} GB/s of logits")


def run(report: Report) -> None:
    print(f"== sampler: vocabulary {VOCAB}, T={TEMP}", flush=True)
    gen = torch.Generator(device=DEVICE).manual_seed(30)
    check_greedy_and_flags(report, gen)
    check_seeded_rows(report, gen)
    check_distribution(report, gen)
    time_kernels(report, gen)
