from __future__ import annotations

import torch
from torch import nn

from nanovllm.layers.fusion import elementwise_op


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm in float32, as Hugging Face computes it."""
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float):
    x = x + residual
    return rms_norm(x, weight, eps), x


class RMSNorm(nn.Module):
    """With ``residual`` it fuses the residual add: returns ``(norm(x + residual), x + residual)``.
    ``elementwise`` (layers/fusion.py): "triton" or "compile" run it as one kernel on CUDA."""

    def __init__(self, hidden_size: int, eps: float = 1e-6, elementwise: str = "torch"):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size), requires_grad=False)
        self._norm = elementwise_op(rms_norm, elementwise)
        self._add_norm = elementwise_op(add_rms_norm, elementwise)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        if residual is None:
            return self._norm(x, self.weight, self.eps)
        return self._add_norm(x, residual, self.weight, self.eps)
