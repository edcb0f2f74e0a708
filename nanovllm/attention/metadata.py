"""Per-step attention metadata, built once by the model runner and passed down explicitly.

Token layout of one step (sequences concatenated, each contributing its new tokens)::

    query rows:  [ s0: 5 prefill tokens | s1: 1 decode | s2: 3-token chunk ]
    cu_seqlens_q  = [0, 5, 6, 9]
    seq_lens      = [5, 812, 259]      context length incl. the new tokens (K/V stored first)
    block_tables  = [[7, 0, 0, 0], [2, 3, 9, 4], [5, 6, 1, 0]]   0-padded, never read past seq_len
    slot_mapping  = block_tables[b][pos // bs] * bs + pos % bs   per new token; < 0 means "skip"

Causality is bottom-right aligned: query row i of sequence b attends keys j <= seq_len - q_len + i.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor  # int64 [num_tokens]
    cu_seqlens_q: torch.Tensor  # int32 [num_seqs + 1]
    seq_lens: torch.Tensor  # int32 [num_seqs]
    block_tables: torch.Tensor  # int32 [num_seqs, max_blocks]
    max_seqlen_q: int
    max_seqlen_k: int
    # Host copies for backends that loop in Python (torch_ref), so they never sync the device.
    query_lens_host: list[int]
    seq_lens_host: list[int]
    # What a backend derives from the above once per step and every layer reuses (the CPU
    # backend's gather plan, attention/cpu_sdpa.py); set by the step's first layer.
    plan: Any = None

    @property
    def num_seqs(self) -> int:
        return len(self.seq_lens_host)

    @property
    def is_decode_only(self) -> bool:
        return self.max_seqlen_q == 1
