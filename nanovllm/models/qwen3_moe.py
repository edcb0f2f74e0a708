"""Qwen3-MoE (Qwen3-30B-A3B's architecture): Qwen3's attention, routed experts as the MLP.

Layer ``i`` is sparse unless ``i in mlp_only_layers`` or ``(i + 1) % decoder_sparse_step != 0``
(then a dense MLP of ``intermediate_size``), as in HF's modeling_qwen3_moe. The experts run the
Triton grouped GEMM when the attention backend is ``triton``, else the pure-torch reference.

Observation: after each forward, ``expert_tokens()`` is ``[sparse layers, experts]``: how many of
the step's tokens chose each expert (CUDA-graph padding rows excluded). The model runner returns
it with its timing (``RunTiming.expert_tokens``).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from nanovllm.attention import AttentionMetadata
from nanovllm.config import ModelSpec
from nanovllm.layers.linear import ReplicatedLinear
from nanovllm.layers.moe import FusedMoE, count_tokens, select_experts
from nanovllm.layers.parallel import TensorParallel
from nanovllm.models.decoder import DecoderForCausalLM, DecoderTraits

_EXPERT_WEIGHT = re.compile(r"(.+\.mlp\.experts)\.(\d+)\.(gate|up|down)_proj\.weight")


class SparseMoeBlock(nn.Module):
    def __init__(self, spec: ModelSpec, tp: TensorParallel, impl: str):
        super().__init__()
        moe = spec.moe
        self.top_k, self.norm_topk_prob = moe.top_k, moe.norm_topk_prob
        self.gate = ReplicatedLinear(spec.hidden_size, moe.num_experts, False, tp)  # the router
        self.experts = FusedMoE(
            moe.num_experts, spec.hidden_size, moe.moe_intermediate_size, tp, impl
        )
        self.register_buffer(
            "tokens_per_expert", torch.zeros(moe.num_experts, dtype=torch.int64), persistent=False
        )

    def forward(self, x: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        weights, ids = select_experts(self.gate(x), self.top_k, self.norm_topk_prob)
        count_tokens(self.tokens_per_expert, ids, meta.slot_mapping >= 0)  # slot < 0: padding
        return self.experts(x, weights, ids)


class Qwen3MoeForCausalLM(DecoderForCausalLM):
    traits = DecoderTraits(qk_norm=True, mlp_bias=False)

    def make_mlp(self, layer_id: int, traits: DecoderTraits, elementwise: str) -> nn.Module:
        if not self.spec.moe.is_sparse(layer_id):
            return super().make_mlp(layer_id, traits, elementwise)
        impl = "triton" if getattr(self.backend, "name", None) == "triton" else "torch"
        return SparseMoeBlock(self.spec, self.tp, impl)

    def map_weight_name(self, name: str) -> tuple[str, object]:
        m = _EXPERT_WEIGHT.fullmatch(name)
        if m is None:
            return super().map_weight_name(name)
        prefix, expert, part = m.groups()
        return f"{prefix}.{'w2' if part == 'down' else 'w13'}_weight", (int(expert), part)

    def sparse_blocks(self) -> list[SparseMoeBlock]:
        return [layer.mlp for layer in self.model.layers if isinstance(layer.mlp, SparseMoeBlock)]

    def expert_tokens(self) -> torch.Tensor:
        """[sparse layers, experts] int64: tokens routed to each expert in the last forward."""
        blocks = self.sparse_blocks()
        if not blocks:  # every layer dense (mlp_only_layers / decoder_sparse_step)
            return torch.zeros(0, self.spec.moe.num_experts, dtype=torch.int64)
        return torch.stack([block.tokens_per_expert for block in blocks])
