"""Sampler: penalties and min-token bans, greedy, temperature, top-k, top-p, per-request seeds,
log-probabilities.

Logits processing comes first, on the device, for the rows that ask for it (``logits_processing``):
repetition / presence / frequency penalties from each row's token ids, then a min_tokens ban (a
logit of float32's lowest finite value, never sampled, and not mistaken for a NaN/inf row). Both
the torch path and the fused GPU pass sample from the processed logits; log-probabilities are the
raw model's (before penalties and temperature), as vLLM reports them.

Sampling uses the exponential-race form of the Gumbel trick: ``argmax(probs / E)`` with
``E ~ Exp(1)`` draws from ``probs``. A seeded request draws its ``E`` from a generator seeded by
``(seed, number of tokens it has generated)``, so its samples do not depend on its batch-mates.

``Sampler.sample`` leaves everything on the device (``Samples``: no synchronization, so the next
step can be launched behind it); the runner brings it to the host as core's ``SamplerOutput``
(``runner/model_runner.py:sampler_output``). Nothing here imports the engine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from nanovllm.utils.transfer import to_device

if TYPE_CHECKING:
    from nanovllm.layers.sampling_batch import PenaltyRow, SamplingBatch


@dataclass
class Samples:
    """What the sampler drew, still on the device: one entry per sample row."""

    tokens: torch.Tensor  # int64 [S]
    finite: torch.Tensor  # bool [S]: False when the row's logits held NaN/inf
    logprobs: LogprobTensors | None = None  # for the rows that asked for log-probabilities

    def host_tensor(self) -> torch.Tensor:
        """tokens and finite as one int64 [2, S] tensor: one copy brings both to the host."""
        return torch.stack([self.tokens, self.finite.long()])


@dataclass
class LogprobTensors:
    """Raw-model log-probabilities of the sampled token, its rank (1 = most likely) and the top k,
    for batch rows ``rows``."""

    rows: list[int]
    num_logprobs: list[int]  # per row in ``rows``
    chosen: torch.Tensor  # float32 [R]
    ranks: torch.Tensor  # int64 [R]
    top_values: torch.Tensor | None  # float32 [R, k]
    top_ids: torch.Tensor | None  # int64 [R, k]

    def fill(self, logprobs: list, top: list, ranks: list) -> None:
        chosen, rank_list = self.chosen.tolist(), self.ranks.tolist()
        top_v = self.top_values.tolist() if self.top_values is not None else None
        top_i = self.top_ids.tolist() if self.top_ids is not None else None
        for j, (i, n) in enumerate(zip(self.rows, self.num_logprobs)):
            logprobs[i], ranks[i] = chosen[j], rank_list[j]
            if n:
                top[i] = dict(zip(top_i[j][:n], top_v[j][:n]))


class Sampler:
    """On CUDA, batches without top-k/top-p take one fused Triton pass (``sampling_kernels``);
    otherwise, and on CPU, the torch path below."""

    def __init__(self, device: torch.device, seed: int = 0, fused: bool | None = None):
        self.device = device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self.rng = random.Random(seed)
        self.fused = device.type == "cuda" if fused is None else fused

    @torch.inference_mode()
    def sample(self, logits: torch.Tensor, batch: SamplingBatch) -> Samples:
        raw = logits
        if batch.penalties or batch.bans:
            logits = logits_processing(logits, batch)
        if (
            self.fused
            and all(k is None for k in batch.top_ks)
            and all(p >= 1.0 for p in batch.top_ps)
        ):
            tokens, finite = self._fused(logits, batch)
        else:
            logits = logits.float()
            # max(dim) gives argmax's indices (the first maximum; a NaN wins) and the row maxima,
            # which with the minima flag NaN/inf rows: two reductions, not isfinite's [S, V]
            # mask (on a CPU, 6x less time than argmax + isfinite().all())
            top, tokens = logits.max(dim=-1)
            if not all(t == 0 for t in batch.temperatures):  # host check: no device sync
                greedy = _on([t == 0 for t in batch.temperatures], logits.device, torch.bool)
                tokens = torch.where(greedy, tokens, self._sample(logits, batch))
            finite = torch.isfinite(top) & torch.isfinite(logits.amin(dim=-1))
        return Samples(tokens, finite, _logprobs(raw, tokens, batch.num_logprobs))

    def _fused(self, logits: torch.Tensor, batch: SamplingBatch) -> tuple[torch.Tensor, ...]:
        from nanovllm.layers.sampling_kernels import gumbel_argmax

        seeds = [
            _mix(s, p) if s is not None else self.rng.getrandbits(62)
            for s, p in zip(batch.seeds, batch.positions)
        ]
        temps = _on(batch.temperatures, logits.device, torch.float32)
        seed_t = _on(seeds, logits.device)
        tokens, bad = gumbel_argmax(logits, temps, seed_t)
        return tokens, ~bad

    def _sample(self, logits: torch.Tensor, batch: SamplingBatch) -> torch.Tensor:
        temps = _on([t if t > 0 else 1.0 for t in batch.temperatures], logits.device, torch.float32)
        scaled = logits / temps[:, None]
        if any(k is not None for k in batch.top_ks) or any(p < 1.0 for p in batch.top_ps):
            scaled = _top_k_top_p(scaled, batch.top_ks, batch.top_ps)
        probs = scaled.softmax(dim=-1)
        noise = torch.empty_like(probs).exponential_(1.0, generator=self.generator)
        for row, (seed, pos) in enumerate(zip(batch.seeds, batch.positions)):
            if seed is not None:
                gen = torch.Generator(device=logits.device).manual_seed(_mix(seed, pos))
                noise[row].exponential_(1.0, generator=gen)
        return (probs / noise).argmax(dim=-1)


def _logprobs(
    logits: torch.Tensor, tokens: torch.Tensor, num_logprobs: list[int | None]
) -> LogprobTensors | None:
    rows = [i for i, n in enumerate(num_logprobs) if n is not None]
    if not rows:
        return None
    idx = _on(rows, logits.device)
    lps = logits[idx].float().log_softmax(dim=-1)
    chosen = lps.gather(1, tokens[idx][:, None])
    ranks = (lps > chosen).sum(dim=-1) + 1  # 1 + tokens strictly more likely
    k = max(num_logprobs[i] for i in rows)
    top_v, top_i = lps.topk(k, dim=-1) if k > 0 else (None, None)
    return LogprobTensors(rows, [num_logprobs[i] for i in rows], chosen[:, 0], ranks, top_v, top_i)


BANNED = torch.finfo(torch.float32).min  # finite: the NaN/inf check must not flag a banned row


def logits_processing(logits: torch.Tensor, batch: SamplingBatch) -> torch.Tensor:
    """A float32 copy of ``logits`` with the batch's penalties, then its bans, applied."""
    out = logits.float().clone()
    if batch.penalties:
        _apply_penalties(out, batch.penalties)
    if batch.bans:
        rows = [row for row, ids in batch.bans for _ in ids]
        cols = [t for _, ids in batch.bans for t in ids]
        out[_on(rows, out.device), _on(cols, out.device)] = BANNED
    return out


def _apply_penalties(logits: torch.Tensor, pens: list[PenaltyRow]) -> None:
    """In place, on the penalized rows. ``counts[r, t]``: how often row r generated token t.

    repetition (HF / vLLM):  seen in prompt or output ->  l > 0 ? l / r : l * r
    frequency, presence (OpenAI / vLLM):  l -= f * counts + p * (counts > 0)
    """
    dev, rows = logits.device, _on([p.row for p in pens], logits.device)
    sub = logits[rows]
    counts = torch.zeros_like(sub)
    out_r = [j for j, p in enumerate(pens) for _ in p.output_token_ids]
    out_t = [t for p in pens for t in p.output_token_ids]
    if out_t:
        ones = torch.ones(len(out_t), device=dev)
        counts.index_put_((_on(out_r, dev), _on(out_t, dev)), ones, accumulate=True)
    present = counts > 0
    seen = present.clone()
    in_r = [j for j, p in enumerate(pens) for _ in p.prompt_token_ids]
    in_t = [t for p in pens for t in p.prompt_token_ids]
    if in_t:
        seen[_on(in_r, dev), _on(in_t, dev)] = True
    rep = _on([p.repetition for p in pens], dev, torch.float32)[:, None]
    sub = torch.where(seen, torch.where(sub > 0, sub / rep, sub * rep), sub)
    freq = _on([p.frequency for p in pens], dev, torch.float32)[:, None]
    pres = _on([p.presence for p in pens], dev, torch.float32)[:, None]
    logits[rows] = sub - freq * counts - pres * present.float()


def _on(values: list, device: torch.device, dtype: torch.dtype = torch.long) -> torch.Tensor:
    return to_device(torch.tensor(values, dtype=dtype), device)


def _top_k_top_p(
    logits: torch.Tensor, top_ks: list[int | None], top_ps: list[float]
) -> torch.Tensor:
    vocab = logits.size(-1)
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    ranks = torch.arange(vocab, device=logits.device)[None, :]
    k = _on([min(x, vocab) if x else vocab for x in top_ks], logits.device)
    drop = ranks >= k[:, None]
    probs = sorted_logits.masked_fill(drop, float("-inf")).softmax(dim=-1)
    p = _on(top_ps, logits.device, probs.dtype)
    # drop a token when the tokens ranked above it already hold probability mass >= p
    drop |= (probs.cumsum(dim=-1) - probs) >= p[:, None]
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(1, order, sorted_logits)


def _mix(seed: int, position: int) -> int:
    """A 63-bit generator seed from (request seed, token position): splitmix64 finalizer."""
    z = (seed * 0x9E3779B97F4A7C15 + position + 1) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) >> 1
