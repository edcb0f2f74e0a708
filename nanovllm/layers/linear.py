"""Linear layers that shard over tensor-parallel ranks at load time.

Column parallel splits the output features (each rank computes a slice); row parallel splits the
input features and all-reduces the partial sums. Merged variants hold several HF weights
(q/k/v, gate/up) in one matrix; ``weight_loader(param, loaded, shard_id)`` puts each in place.

The product is ``F.linear`` (cuBLAS on CUDA), except for the row counts where the engine's start-up
measured the skinny-GEMM kernel (``layers/skinny_gemm.py``) faster for this layer's shape: the
runner plans (``layers/skinny_plan.py`` sets ``skinny``) only when it captures decode CUDA graphs,
whose batch buckets are those row counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from nanovllm.layers.parallel import SINGLE, TensorParallel

if TYPE_CHECKING:
    from nanovllm.layers.skinny_gemm import SkinnyPlan


class LinearBase(nn.Module):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool,
        tp: TensorParallel,
        tp_dim: int | None,
    ):
        super().__init__()
        self.tp, self.tp_dim = tp, tp_dim
        self.weight = nn.Parameter(torch.empty(out_features, in_features), requires_grad=False)
        self.weight.weight_loader = self.weight_loader
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features), requires_grad=False)
            self.bias.weight_loader = self.weight_loader
        else:
            self.register_parameter("bias", None)
        self.skinny: SkinnyPlan | None = None  # row count -> kernel config, set by skinny_plan

    def _expect_shards(self, shard_ids: tuple) -> None:
        """A merged matrix is loaded from several checkpoint tensors: the loader checks them all."""
        for param in (self.weight, self.bias):
            if param is not None:
                param.shard_ids = shard_ids

    def _rank_slice(self, loaded: torch.Tensor, dim: int) -> torch.Tensor:
        size = loaded.size(dim) // self.tp.size
        return loaded.narrow(dim, self.tp.rank * size, size)

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
        if self.tp_dim is not None and self.tp.size > 1 and loaded.dim() > self.tp_dim:
            loaded = self._rank_slice(loaded, self.tp_dim)
        param.data.copy_(loaded)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._matmul(x)

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        plan = self.skinny
        if plan is not None and x.dim() == 2 and x.shape[0] in plan.configs:
            return plan(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


class ReplicatedLinear(LinearBase):
    def __init__(
        self, in_features: int, out_features: int, bias: bool = False, tp: TensorParallel = SINGLE
    ):
        super().__init__(in_features, out_features, bias, tp, None)


class ColumnParallelLinear(LinearBase):
    def __init__(
        self, in_features: int, out_features: int, bias: bool = False, tp: TensorParallel = SINGLE
    ):
        super().__init__(in_features, tp.shard(out_features, "out_features"), bias, tp, 0)


class MergedColumnParallelLinear(ColumnParallelLinear):
    """Several column-parallel outputs stacked: e.g. gate_up = [gate; up]."""

    def __init__(
        self,
        in_features: int,
        output_sizes: list[int],
        bias: bool = False,
        tp: TensorParallel = SINGLE,
    ):
        self.output_sizes = output_sizes
        super().__init__(in_features, sum(output_sizes), bias, tp)
        self._expect_shards(tuple(range(len(output_sizes))))

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id: int) -> None:
        offset = sum(self.output_sizes[:shard_id]) // self.tp.size
        size = self.output_sizes[shard_id] // self.tp.size
        param.data.narrow(0, offset, size).copy_(self._rank_slice(loaded, 0))


class QKVParallelLinear(ColumnParallelLinear):
    """q, k and v projections in one matrix; each rank holds its heads' rows of each."""

    def __init__(
        self,
        hidden_size: int,
        head_dim: int,
        num_heads: int,
        num_kv_heads: int,
        bias: bool = False,
        tp: TensorParallel = SINGLE,
    ):
        self.head_dim = head_dim
        self.num_heads = tp.shard(num_heads, "num_attention_heads")
        self.num_kv_heads = tp.shard(num_kv_heads, "num_key_value_heads")
        out = (num_heads + 2 * num_kv_heads) * head_dim
        super().__init__(hidden_size, out, bias, tp)
        self._expect_shards(("q", "k", "v"))

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id: str) -> None:
        q, kv = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        offset, size = {"q": (0, q), "k": (q, kv), "v": (q + kv, kv)}[shard_id]
        param.data.narrow(0, offset, size).copy_(self._rank_slice(loaded, 0))


class RowParallelLinear(LinearBase):
    def __init__(
        self, in_features: int, out_features: int, bias: bool = False, tp: TensorParallel = SINGLE
    ):
        super().__init__(tp.shard(in_features, "in_features"), out_features, bias, tp, 1)

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
        if loaded.dim() == 1:  # the bias is not split; only rank 0 adds it
            param.data.copy_(loaded if self.tp.rank == 0 else torch.zeros_like(loaded))
        else:
            super().weight_loader(param, loaded)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tp.all_reduce(self._matmul(x))
