"""The attention-backend interface: store this step's K/V in the paged cache, then attend."""

from __future__ import annotations

from typing import Protocol

import torch

from nanovllm.attention.metadata import AttentionMetadata


class AttentionBackend(Protocol):
    name: str

    def store_kv(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        meta: AttentionMetadata,
    ) -> None:
        """Write ``k, v`` ([tokens, kv_heads, head_dim]) into their slots."""

    def attend(
        self,
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        meta: AttentionMetadata,
        scale: float,
    ) -> torch.Tensor:
        """Paged attention of ``q`` ([tokens, heads, head_dim]) over each sequence's cached
        context."""
