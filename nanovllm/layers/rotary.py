"""Rotary position embedding (NeoX layout: the two halves of head_dim rotate together)."""

from __future__ import annotations

import torch
from torch import nn

from nanovllm.layers.fusion import maybe_compile


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)


def apply_rotary(positions, q, k, cos_cache, sin_cache):
    cos = cos_cache[positions].unsqueeze(1)  # [T, 1, D/2]
    sin = sin_cache[positions].unsqueeze(1)
    return _rotate(q, cos, sin), _rotate(k, cos, sin)


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, max_position: int, base: float, compile: bool = False):
        super().__init__()
        # Computed exactly as Hugging Face does, so float32 results match bit for bit.
        inv_freq = 1.0 / (
            base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim)
        )
        freqs = torch.arange(max_position, dtype=torch.float32)[:, None] * inv_freq[None, :]
        self.register_buffer("cos", freqs.cos(), persistent=False)  # [max_position, head_dim/2]
        self.register_buffer("sin", freqs.sin(), persistent=False)
        self._fn = maybe_compile(apply_rotary, compile)

    def forward(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor):
        return self._fn(positions, q, k, self.cos, self.sin)
