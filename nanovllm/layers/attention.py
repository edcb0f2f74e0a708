"""The attention layer: stores this step's K/V into its slice of the KV cache, then attends."""

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
        k_cache, v_cache = kv_cache[0, self.layer_id], kv_cache[1, self.layer_id]
        self.backend.store_kv(k, v, k_cache, v_cache, meta)
        return self.backend.attend(q, k_cache, v_cache, meta, self.scale)
