"""Mixture-of-experts MLP: the router (Hugging Face's top-k) and the experts of one layer.

Routing, as HF's Qwen3-MoE: ``probs = softmax(x @ W_gate^T)`` in float32, keep the ``top_k``
largest, divide them by their sum when ``norm_topk_prob``, cast to the activation dtype.

The experts of a layer are ``E`` gated MLPs with their weights stacked::

    w13 [E, 2 I/tp, H]   rows [0, I/tp): this rank's gate rows, [I/tp, 2 I/tp): its up rows
    w2  [E, H, I/tp]     this rank's columns of down

Tensor parallelism splits every expert along I, as the dense MLP is split: each rank computes a
partial sum for every token and one all-reduce combines them; routing is replicated.

Two implementations of ``experts(x, weights, ids)``, the same function:
- ``"torch"``: a loop over the experts that got tokens, as HF computes it. Pure torch, CPU or GPU:
  the reference. Its shapes depend on the routing, so it cannot be captured in a CUDA graph.
- ``"triton"``: pairs (token, choice) sorted by expert, two grouped GEMMs
  (``layers/moe_kernels.py``). Static shapes for a given token count: decode graphs capture it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nanovllm.layers.parallel import SINGLE, TensorParallel

MOE_IMPLS = ("torch", "triton")


def select_experts(
    router_logits: torch.Tensor, top_k: int, norm_topk_prob: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """[T, E] logits -> (weights [T, top_k] in the logits' dtype, expert ids [T, top_k] int64)."""
    probs = F.softmax(router_logits, dim=-1, dtype=torch.float)
    weights, ids = torch.topk(probs, top_k, dim=-1)
    if norm_topk_prob:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights.to(router_logits.dtype), ids


def count_tokens(out: torch.Tensor, ids: torch.Tensor, valid: torch.Tensor) -> None:
    """``out[e]`` = how many of the ``valid`` tokens chose expert ``e``. In place, static shapes:
    safe inside a CUDA graph (whose padding rows are the invalid ones)."""
    ones = valid.to(out.dtype)[:, None].expand(ids.shape).reshape(-1)
    out.zero_().scatter_add_(0, ids.reshape(-1), ones)


def experts_torch(
    x: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    weights: torch.Tensor,
    ids: torch.Tensor,
) -> torch.Tensor:
    """The reference: for each expert that got tokens, its gated MLP on them, weighted, summed."""
    out = torch.zeros_like(x)
    hit = torch.bincount(ids.flatten(), minlength=w13.size(0)).nonzero().flatten().tolist()
    for e in hit:
        token, choice = torch.where(ids == e)  # a token picks an expert at most once
        gate, up = F.linear(x[token], w13[e]).chunk(2, dim=-1)
        h = F.linear(F.silu(gate) * up, w2[e]) * weights[token, choice, None]
        out.index_add_(0, token, h.to(out.dtype))
    return out


class FusedMoE(nn.Module):
    """All experts of one layer, sharded along their intermediate size.

    Checkpoint tensors ``experts.{e}.{gate,up,down}_proj.weight`` load with shard id
    ``(e, "gate" | "up" | "down")``; ``shard_ids`` lists them all so loading checks completeness.
    """

    def __init__(
        self,
        num_experts: int,
        hidden_size: int,
        intermediate_size: int,
        tp: TensorParallel = SINGLE,
        impl: str = "torch",
    ):
        super().__init__()
        assert impl in MOE_IMPLS, impl
        self.tp, self.impl = tp, impl
        self.num_experts = num_experts
        self.n = n = tp.shard(intermediate_size, "moe_intermediate_size")
        self.w13_weight = nn.Parameter(
            torch.empty(num_experts, 2 * n, hidden_size), requires_grad=False
        )
        self.w2_weight = nn.Parameter(torch.empty(num_experts, hidden_size, n), requires_grad=False)
        self.w13_weight.shard_ids = [(e, p) for e in range(num_experts) for p in ("gate", "up")]
        self.w2_weight.shard_ids = [(e, "down") for e in range(num_experts)]
        for p in (self.w13_weight, self.w2_weight):
            p.weight_loader = self.weight_loader

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id) -> None:
        expert, part = shard_id
        n, rank = self.n, self.tp.rank
        if part == "down":  # [H, I]: this rank's columns
            param.data[expert].copy_(loaded.narrow(1, rank * n, n))
        else:  # [I, H]: this rank's rows, into the gate or the up half
            offset = 0 if part == "gate" else n
            param.data[expert].narrow(0, offset, n).copy_(loaded.narrow(0, rank * n, n))

    def forward(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if self.impl == "triton":
            from nanovllm.layers.moe_kernels import fused_experts

            out = fused_experts(x, self.w13_weight, self.w2_weight, weights, ids)
        else:
            out = experts_torch(x, self.w13_weight, self.w2_weight, weights, ids)
        return self.tp.all_reduce(out)
