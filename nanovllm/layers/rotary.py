"""Rotary position embedding (NeoX layout: the two halves of head_dim rotate together).

The inverse frequencies follow Hugging Face's ``modeling_rope_utils`` operation for operation
(default, and Llama 3's "llama3" scaling), so float32 tables match it bit for bit.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nanovllm.model_spec import RopeScaling


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)


def apply_rotary(positions, q, k, cos_cache, sin_cache):
    cos = cos_cache[positions].unsqueeze(1)  # [T, 1, D/2]
    sin = sin_cache[positions].unsqueeze(1)
    return _rotate(q, cos, sin), _rotate(k, cos, sin)


def inv_frequencies(head_dim: int, base: float, scaling: RopeScaling | None = None) -> torch.Tensor:
    """[head_dim / 2] float32 inverse frequencies, scaled as ``scaling`` says."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if scaling is None:
        return inv_freq
    # "llama3": wavelengths above low_freq_wavelen shrink by `factor`, those below
    # high_freq_wavelen stay, the band between blends the two linearly in 1 / wavelength.
    old_len = scaling.original_max_position_embeddings
    low, high, factor = scaling.low_freq_factor, scaling.high_freq_factor, scaling.factor
    low_freq_wavelen, high_freq_wavelen = old_len / low, old_len / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(medium, smoothed, scaled)


class RotaryEmbedding(nn.Module):
    """The cos / sin tables every layer's attention prologue reads, ``[max_position, head_dim / 2]``
    in float32; ``forward`` applies them the eager way."""

    def __init__(
        self,
        head_dim: int,
        max_position: int,
        base: float,
        scaling: RopeScaling | None = None,
    ):
        super().__init__()
        inv_freq = inv_frequencies(head_dim, base, scaling)
        freqs = torch.arange(max_position, dtype=torch.float32)[:, None] * inv_freq[None, :]
        self.register_buffer("cos", freqs.cos(), persistent=False)  # [max_position, head_dim/2]
        self.register_buffer("sin", freqs.sin(), persistent=False)

    def forward(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor):
        return apply_rotary(positions, q, k, self.cos, self.sin)
