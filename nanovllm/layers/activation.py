from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nanovllm.layers.fusion import elementwise_op


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    gate, up = x.chunk(2, -1)
    return F.silu(gate) * up


class SiluAndMul(nn.Module):
    """``silu(gate) * up`` for a merged ``[gate | up]`` input."""

    def __init__(self, elementwise: str = "torch"):
        super().__init__()
        self._fn = elementwise_op(silu_and_mul, elementwise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fn(x)
