"""The attention layer: stores this step's K/V into its slice of the KV cache, then attends.

``forward`` does both. A caller whose prologue kernel has already written K/V into
``kv_caches(kv_cache)`` (models/decoder.py, where ``layers/fusion.py:kv_store_op`` allows) calls
``attend`` alone, on the same caches.
"""

from __future__ import annotations

import torch
from torch import nn

from nanovllm.attention import AttentionBackend, AttentionMetadata


class Attention(nn.Module):
    def __init__(
        self,
        layer_id: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        backend: AttentionBackend,
    ):
        super().__init__()
        self.layer_id = layer_id
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.scale = head_dim**-0.5
        self.backend = backend

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        meta: AttentionMetadata,
        kv_cache: torch.Tensor,
    ) -> torch.Tensor:
        """q: [T, heads, D]; k, v: [T, kv_heads, D];
        kv_cache: [2, layers, blocks, bs, kv_heads, D]."""
        caches = self.kv_caches(kv_cache)
        self.backend.store_kv(k, v, *caches, meta)
        return self.attend(q, meta, caches)

    def attend(
        self, q: torch.Tensor, meta: AttentionMetadata, caches: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """Attention over this layer's ``caches`` (``kv_caches``'s) alone: this step's K/V must
        already be in them."""
        return self.backend.attend(q, *caches, meta, self.scale)

    def kv_caches(self, kv_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This layer's ``(k_cache, v_cache)``, each ``[blocks, bs, kv_heads, D]``."""
        return kv_cache[0, self.layer_id], kv_cache[1, self.layer_id]
