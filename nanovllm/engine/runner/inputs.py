"""ScheduledBatch -> StepInputs: the flat arrays one forward pass needs. Host-side numpy only.

Built once per step on rank 0; tensor-parallel workers receive the same ``StepInputs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from nanovllm.engine.core.batch import ScheduledBatch
from nanovllm.engine.core.sequence import Sequence


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


@dataclass
class StepInputs:
    input_ids: np.ndarray  # int64 [T]
    positions: np.ndarray  # int64 [T]
    slot_mapping: np.ndarray  # int64 [T]
    cu_seqlens_q: np.ndarray  # int32 [B + 1]
    seq_lens: np.ndarray  # int32 [B]
    block_tables: np.ndarray  # int32 [B, max_blocks]
    logits_indices: np.ndarray  # int64 [S]: rows whose logits are sampled
    sampling: SamplingBatch

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def num_seqs(self) -> int:
        return len(self.seq_lens)

    @property
    def is_decode_only(self) -> bool:
        return self.num_tokens == self.num_seqs


def slot_mapping(
    block_tables: np.ndarray, seq_of_token: np.ndarray, positions: np.ndarray, block_size: int
) -> np.ndarray:
    """The KV-cache slot of each token: its sequence's block for that position, times the block
    size, plus the offset in the block::

        position p of row b  ->  block_tables[b, p // block_size] * block_size + p % block_size
    """
    blocks = block_tables[seq_of_token, positions // block_size].astype(np.int64)
    return blocks * block_size + positions % block_size


def prepare_inputs(batch: ScheduledBatch, block_size: int) -> StepInputs:
    starts = np.asarray(batch.starts, dtype=np.int64)
    counts = np.asarray(batch.num_new_tokens, dtype=np.int64)
    cu = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=cu[1:])
    seq_lens = starts + counts
    # positions: start_b + 0..n_b-1 for each sequence b, without a Python loop per token
    seq_of_token = np.repeat(np.arange(len(counts)), counts)
    positions = starts[seq_of_token] + (np.arange(cu[-1]) - cu[:-1][seq_of_token])
    width = max(len(s.block_table) for s in batch.seqs)
    tables = np.zeros((len(counts), width), dtype=np.int32)
    for row, seq in enumerate(batch.seqs):
        tables[row, : len(seq.block_table)] = seq.block_table
    slots = slot_mapping(tables, seq_of_token, positions, block_size)
    input_ids = np.fromiter(
        (
            t
            for seq, s, n in zip(batch.seqs, batch.starts, batch.num_new_tokens)
            for t in seq.token_ids[s : s + n]
        ),
        dtype=np.int64,
        count=int(cu[-1]),
    )
    rows = batch.sample_rows
    return StepInputs(
        input_ids=input_ids,
        positions=positions,
        slot_mapping=slots,
        cu_seqlens_q=cu.astype(np.int32),
        seq_lens=seq_lens.astype(np.int32),
        block_tables=tables,
        logits_indices=cu[1:][rows] - 1,
        sampling=_sampling_batch(batch, rows),
    )


def _sampling_batch(batch: ScheduledBatch, rows: list[int]) -> SamplingBatch:
    seqs = [batch.seqs[i] for i in rows]
    sampling = SamplingBatch(
        temperatures=[s.params.temperature for s in seqs],
        top_ks=[s.params.top_k for s in seqs],
        top_ps=[s.params.top_p for s in seqs],
        seeds=[s.params.seed for s in seqs],
        positions=[s.num_completion_tokens for s in seqs],
        num_logprobs=[s.params.logprobs for s in seqs],
    )
    for row in [r for r, s in enumerate(seqs) if s.params.has_logits_processing]:
        _add_logits_processing(sampling, row, seqs[row])
    return sampling


def _add_logits_processing(sampling: SamplingBatch, row: int, seq: Sequence) -> None:
    """Penalties get the row's token ids (host lists, copied: the sequence moves on); a
    sequence short of ``min_tokens`` gets its stop tokens and EOS banned."""
    p, num_prompt = seq.params, seq.num_prompt_tokens
    if p.has_penalties:
        prompt = seq.token_ids[:num_prompt] if p.repetition_penalty != 1.0 else []
        sampling.penalties.append(
            PenaltyRow(
                row,
                p.repetition_penalty,
                p.presence_penalty,
                p.frequency_penalty,
                prompt,
                seq.token_ids[num_prompt:],
            )
        )
    if seq.min_tokens_ban and seq.num_completion_tokens < p.min_tokens:
        sampling.bans.append((row, seq.min_tokens_ban))
