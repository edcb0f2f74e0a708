"""The decoder-only transformer every supported family shares, parameterized by what differs.

Llama, Mistral, Qwen2 and Qwen3 are one architecture with small switches, read from Hugging
Face's modeling files:

    family    q/k/v bias          o_proj bias       q/k RMSNorm   MLP bias     rotary
    Llama     attention_bias      attention_bias    no            mlp_bias     default | llama3
    Mistral   no                  no                no            no           default
    Qwen2     yes                 no                no            no           default
    Qwen3     attention_bias      attention_bias    yes           no           default

A family is a subclass of ``DecoderForCausalLM`` that sets ``traits``; Qwen3-MoE also overrides
``make_mlp`` (experts instead of the dense MLP). Each layer receives the step's
``AttentionMetadata`` and the one KV-cache tensor explicitly.

Attention's prologue (``qk_norm_rope``) hands q, k, v to the attention layer, which stores k and
v, then attends. Where ``layers/fusion.py:kv_store_op`` allows (Triton kernels on both sides and
``fused_kv_store``), the prologue's kernel writes k and v to the cache itself and the layer only
attends: the same values, one launch fewer per layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nanovllm.attention import AttentionBackend, AttentionMetadata
from nanovllm.config import ModelSpec
from nanovllm.layers.activation import SiluAndMul
from nanovllm.layers.attention import Attention
from nanovllm.layers.embed_head import ParallelLMHead, VocabParallelEmbedding
from nanovllm.layers.fusion import elementwise_op, kv_store_op
from nanovllm.layers.linear import MergedColumnParallelLinear, QKVParallelLinear, RowParallelLinear
from nanovllm.layers.norm import RMSNorm, rms_norm
from nanovllm.layers.parallel import TensorParallel
from nanovllm.layers.rotary import RotaryEmbedding, apply_rotary


@dataclass(frozen=True)
class DecoderTraits:
    """What a family fixes about its layers. ``None``: take the value from config.json."""

    qk_norm: bool = False
    qkv_bias: bool | None = None  # None: spec.attention_bias
    o_bias: bool | None = None  # None: spec.attention_bias
    mlp_bias: bool | None = None  # None: spec.mlp_bias

    def resolve(self, spec: ModelSpec) -> DecoderTraits:
        def pick(value: bool | None, default: bool) -> bool:
            return default if value is None else value

        return DecoderTraits(
            qk_norm=self.qk_norm,
            qkv_bias=pick(self.qkv_bias, spec.attention_bias),
            o_bias=pick(self.o_bias, spec.attention_bias),
            mlp_bias=pick(self.mlp_bias, spec.mlp_bias),
        )


def qk_norm_rope(
    qkv,
    positions,
    q_weight,
    k_weight,
    eps: float,
    cos,
    sin,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
):
    """[T, (H + 2 Hkv) D] -> q [T, H, D], k and v [T, Hkv, D], with q and k normed and rotated.

    ``q_weight`` / ``k_weight`` None: no per-head norm (every family but Qwen3)."""
    q, k, v = qkv.split(
        [num_heads * head_dim, num_kv_heads * head_dim, num_kv_heads * head_dim], dim=-1
    )
    q, k = q.view(-1, num_heads, head_dim), k.view(-1, num_kv_heads, head_dim)
    if q_weight is not None:
        q, k = rms_norm(q, q_weight, eps), rms_norm(k, k_weight, eps)
    q, k = apply_rotary(positions, q, k, cos, sin)
    return q, k, v.view(-1, num_kv_heads, head_dim)


class DecoderAttention(nn.Module):
    def __init__(
        self,
        spec: ModelSpec,
        traits: DecoderTraits,
        layer_id: int,
        backend: AttentionBackend,
        rotary: RotaryEmbedding,
        tp: TensorParallel,
        elementwise: str = "torch",
        fused_kv_store: bool = False,
    ):
        super().__init__()
        d = spec.head_dim
        heads, kv_heads = spec.num_attention_heads, spec.num_key_value_heads
        self.qkv_proj = QKVParallelLinear(spec.hidden_size, d, heads, kv_heads, traits.qkv_bias, tp)
        self.num_heads, self.num_kv_heads = self.qkv_proj.num_heads, self.qkv_proj.num_kv_heads
        self.o_proj = RowParallelLinear(heads * d, spec.hidden_size, traits.o_bias, tp)
        if traits.qk_norm:  # hold the weights; applied in _prologue
            self.q_norm = RMSNorm(d, spec.rms_norm_eps)
            self.k_norm = RMSNorm(d, spec.rms_norm_eps)
        self.qk_norm = traits.qk_norm
        self.rotary = rotary  # one cos/sin table, shared by every layer
        self.attn = Attention(layer_id, self.num_heads, self.num_kv_heads, d, backend)
        self.head_dim, self.eps = d, spec.rms_norm_eps
        # split qkv, per-head q/k RMSNorm, rotary: one function, so one kernel on CUDA
        self._prologue = elementwise_op(qk_norm_rope, elementwise)
        # the same, also writing k and v to the cache (None: the attention layer stores them)
        self._prologue_store_kv = kv_store_op(elementwise, backend.name, fused_kv_store)

    def forward(self, positions, hidden, meta: AttentionMetadata, kv_cache: torch.Tensor):
        args = (
            self.qkv_proj(hidden),
            positions,
            self.q_norm.weight if self.qk_norm else None,
            self.k_norm.weight if self.qk_norm else None,
            self.eps,
            self.rotary.cos,
            self.rotary.sin,
            self.num_heads,
            self.num_kv_heads,
            self.head_dim,
        )
        if self._prologue_store_kv is None:
            q, k, v = self._prologue(*args)
            o = self.attn(q, k, v, meta, kv_cache)
        else:
            caches = self.attn.kv_caches(kv_cache)
            q = self._prologue_store_kv(*args, *caches, meta.slot_mapping)
            o = self.attn.attend(q, meta, caches)
        return self.o_proj(o.flatten(1))


class DenseMLP(nn.Module):
    """``down(silu(gate(x)) * up(x))``; gate and up in one column-parallel matrix."""

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        bias: bool,
        tp: TensorParallel,
        elementwise: str = "torch",
    ):
        super().__init__()
        n = intermediate_size
        self.gate_up_proj = MergedColumnParallelLinear(hidden_size, [n, n], bias, tp)
        self.down_proj = RowParallelLinear(n, hidden_size, bias, tp)
        self.act = SiluAndMul(elementwise)

    def forward(self, x, meta: AttentionMetadata | None = None):
        return self.down_proj(self.act(self.gate_up_proj(x)))


class DecoderLayer(nn.Module):
    def __init__(
        self,
        spec: ModelSpec,
        attn: DecoderAttention,
        mlp: nn.Module,
        elementwise: str = "torch",
    ):
        super().__init__()
        self.input_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps, elementwise)
        self.self_attn = attn
        self.post_attention_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps, elementwise)
        self.mlp = mlp

    def forward(self, positions, hidden, residual, meta, kv_cache):
        if residual is None:
            hidden, residual = self.input_layernorm(hidden), hidden
        else:
            hidden, residual = self.input_layernorm(hidden, residual)
        hidden = self.self_attn(positions, hidden, meta, kv_cache)
        hidden, residual = self.post_attention_layernorm(hidden, residual)
        return self.mlp(hidden, meta), residual


class DecoderForCausalLM(nn.Module):
    """Embedding, ``num_hidden_layers`` decoder layers, final norm, LM head (tied or not)."""

    traits = DecoderTraits()
    # HF weight name fragment -> (our merged parameter, shard id)
    packed_modules_mapping = {
        "q_proj": ("qkv_proj", "q"),
        "k_proj": ("qkv_proj", "k"),
        "v_proj": ("qkv_proj", "v"),
        "gate_proj": ("gate_up_proj", 0),
        "up_proj": ("gate_up_proj", 1),
    }

    def __init__(
        self,
        spec: ModelSpec,
        backend: AttentionBackend,
        tp: TensorParallel,
        elementwise: str = "torch",
        fused_kv_store: bool = False,
    ):
        """``elementwise``: how the norms, rotary and SiLU-and-mul run (layers/fusion.py);
        ``fused_kv_store``: let attention's prologue store K/V where it can (the same file)."""
        super().__init__()
        self.spec, self.tp, self.backend = spec, tp, backend
        traits = self.traits.resolve(spec)
        self.rotary = RotaryEmbedding(
            spec.head_dim, spec.max_position_embeddings, spec.rope_theta, spec.rope_scaling
        )
        self.model = nn.Module()
        self.model.embed_tokens = VocabParallelEmbedding(spec.vocab_size, spec.hidden_size, tp)
        self.model.layers = nn.ModuleList(
            DecoderLayer(
                spec,
                DecoderAttention(
                    spec, traits, i, backend, self.rotary, tp, elementwise, fused_kv_store
                ),
                self.make_mlp(i, traits, elementwise),
                elementwise,
            )
            for i in range(spec.num_hidden_layers)
        )
        self.model.norm = RMSNorm(spec.hidden_size, spec.rms_norm_eps, elementwise)
        self.lm_head = ParallelLMHead(spec.vocab_size, spec.hidden_size, tp)
        if spec.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def make_mlp(self, layer_id: int, traits: DecoderTraits, elementwise: str) -> nn.Module:
        """The MLP of layer ``layer_id``; a sparse (MoE) family overrides this."""
        spec = self.spec
        return DenseMLP(
            spec.hidden_size, spec.intermediate_size, traits.mlp_bias, self.tp, elementwise
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttentionMetadata,
        kv_cache: torch.Tensor,
    ) -> torch.Tensor:
        hidden, residual = self.model.embed_tokens(input_ids), None
        for layer in self.model.layers:
            hidden, residual = layer(positions, hidden, residual, meta, kv_cache)
        hidden, _ = self.model.norm(hidden, residual)
        return hidden

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor | None:
        return self.lm_head(hidden)

    def map_weight_name(self, name: str) -> tuple[str, object]:
        """HF checkpoint tensor name -> (our parameter name, shard id or None)."""
        for fragment, (merged, shard_id) in self.packed_modules_mapping.items():
            if f".{fragment}." in name:
                return name.replace(fragment, merged), shard_id
        return name, None
