"""ScheduledBatch -> StepInputs: the flat arrays one forward pass needs. Host-side numpy only.

Built once per step on rank 0; tensor-parallel workers receive the same ``StepInputs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from operator import attrgetter, itemgetter

import numpy as np

from nanovllm.engine.core.batch import ScheduledBatch
from nanovllm.engine.core.sequence import Sequence
from nanovllm.layers.sampling_batch import PenaltyRow, SamplingBatch


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
    """The step's flat arrays. Per-sequence work is left to C-level loops (``map``,
    ``np.fromiter``) and numpy: this runs every step, for every running sequence."""
    starts = np.asarray(batch.starts, dtype=np.int64)
    counts = np.asarray(batch.num_new_tokens, dtype=np.int64)
    num_seqs = len(counts)
    cu = np.zeros(num_seqs + 1, dtype=np.int64)
    np.cumsum(counts, out=cu[1:])
    seq_lens = starts + counts
    # positions: start_b + 0..n_b-1 for each sequence b, without a Python loop per token
    seq_of_token = np.repeat(np.arange(num_seqs), counts)
    positions = starts[seq_of_token] + (np.arange(cu[-1]) - cu[:-1][seq_of_token])
    tables = _block_tables(list(map(attrgetter("block_table"), batch.seqs)))
    slots = slot_mapping(tables, seq_of_token, positions, block_size)
    token_lists = map(attrgetter("token_ids"), batch.seqs)
    if cu[-1] == num_seqs and all(batch.reaches_end):  # one token each, the last: decodes
        input_ids = np.fromiter(map(itemgetter(-1), token_lists), np.int64, count=num_seqs)
    else:
        input_ids = np.fromiter(
            chain.from_iterable(
                t[s : s + n] for t, s, n in zip(token_lists, batch.starts, batch.num_new_tokens)
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


def _block_tables(tables: list[list[int]]) -> np.ndarray:
    """The block tables as one int32 array, zero-padded to the longest."""
    lens = np.fromiter(map(len, tables), np.int64, count=len(tables))
    flat = np.fromiter(chain.from_iterable(tables), np.int32, count=int(lens.sum()))
    out = np.zeros((len(tables), int(lens.max())), dtype=np.int32)
    row_starts = np.zeros(len(tables), dtype=np.int64)
    np.cumsum(lens[:-1], out=row_starts[1:])
    rows = np.repeat(np.arange(len(tables)), lens)
    out[rows, np.arange(len(flat)) - row_starts[rows]] = flat
    return out


_SAMPLING = attrgetter("temperature", "top_k", "top_p", "seed", "logprobs")


def _sampling_batch(batch: ScheduledBatch, rows: list[int]) -> SamplingBatch:
    seqs = [batch.seqs[i] for i in rows] if len(rows) < len(batch.seqs) else batch.seqs
    params = list(map(attrgetter("params"), seqs))
    columns = list(zip(*map(_SAMPLING, params))) if seqs else [()] * 5
    num_prompt = map(attrgetter("num_prompt_tokens"), seqs)
    sampling = SamplingBatch(
        temperatures=list(columns[0]),
        top_ks=list(columns[1]),
        top_ps=list(columns[2]),
        seeds=list(columns[3]),
        positions=[len(s.token_ids) - p for s, p in zip(seqs, num_prompt)],
        num_logprobs=list(columns[4]),
    )
    for row in [r for r, p in enumerate(params) if p.has_logits_processing]:
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
