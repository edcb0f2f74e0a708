"""The sampler's input: per-row sampling parameters of the rows that sample this step, as host
lists. The runner builds one per step from the scheduled sequences (``runner/inputs.py``); the
sampler (``sampler.py``) reads it, and nothing here knows what a sequence is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


@dataclass
class SamplingBatch:
    """Per-row sampling parameters of the sequences that sample this step (host lists)."""

    temperatures: list[float]
    top_ks: list[int | None]
    top_ps: list[float]
    seeds: list[int | None]
    positions: list[int]  # tokens generated so far by each row's sequence
    num_logprobs: list[int | None]
    penalties: list[PenaltyRow] = field(default_factory=list)  # only the rows with penalties
    bans: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)  # (row, banned ids)


class PenaltyRow(NamedTuple):
    """One row's penalties and the token ids they count: the prompt's (for the repetition
    penalty; empty when it is off) and the generated ones (the sampler counts them)."""

    row: int
    repetition: float
    presence: float
    frequency: float
    prompt_token_ids: list[int]
    output_token_ids: list[int]
