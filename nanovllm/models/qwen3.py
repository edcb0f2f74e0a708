"""Qwen3 (dense): the Hugging Face architecture with tensor-parallel layers and paged attention.

Each layer receives the step's ``AttentionMetadata`` and the one KV-cache tensor explicitly.
"""

from __future__ import annotations

import torch
from torch import nn

from nanovllm.attention import AttentionBackend, AttentionMetadata
from nanovllm.config import ModelSpec
from nanovllm.layers.activation import SiluAndMul
from nanovllm.layers.attention import Attention
from nanovllm.layers.embed_head import ParallelLMHead, VocabParallelEmbedding
from nanovllm.layers.fusion import maybe_compile
from nanovllm.layers.linear import MergedColumnParallelLinear, QKVParallelLinear, RowParallelLinear
from nanovllm.layers.norm import RMSNorm, rms_norm
from nanovllm.layers.parallel import TensorParallel
from nanovllm.layers.rotary import RotaryEmbedding, apply_rotary


class Qwen3Attention(nn.Module):
    def __init__(
        self,
        spec: ModelSpec,
        layer_id: int,
        backend: AttentionBackend,
        rotary: RotaryEmbedding,
        tp: TensorParallel,
        compile: bool = False,
    ):
        super().__init__()
        d = spec.head_dim
        self.qkv_proj = QKVParallelLinear(
            spec.hidden_size,
            d,
            spec.num_attention_heads,
            spec.num_key_value_heads,
            spec.attention_bias,
            tp,
        )
        self.num_heads, self.num_kv_heads = self.qkv_proj.num_heads, self.qkv_proj.num_kv_heads
        self.o_proj = RowParallelLinear(spec.num_attention_heads * d, spec.hidden_size, False, tp)
        self.q_norm = RMSNorm(d, spec.rms_norm_eps)  # holds the weight; applied in _prologue
        self.k_norm = RMSNorm(d, spec.rms_norm_eps)
        self.rotary = rotary  # one cos/sin table, shared by every layer
        self.attn = Attention(layer_id, self.num_heads, self.num_kv_heads, d, backend)
        self.head_dim, self.eps = d, spec.rms_norm_eps
        # split qkv, per-head q/k RMSNorm, rotary: one compiled function, so one or two kernels
        self._prologue = maybe_compile(qk_norm_rope, compile)

    def forward(self, positions, hidden, meta: AttentionMetadata, kv_cache: torch.Tensor):
        q, k, v = self._prologue(
            self.qkv_proj(hidden),
            positions,
            self.q_norm.weight,
            self.k_norm.weight,
            self.eps,
            self.rotary.cos,
            self.rotary.sin,
            self.num_heads,
            self.num_kv_heads,
            self.head_dim,
        )
        o = self.attn(q, k, v, meta, kv_cache)
        return self.o_proj(o.flatten(1))


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
    """[T, (H + 2 Hkv) D] -> q [T, H, D], k and v [T, Hkv, D], with q and k normed and rotated."""
    q, k, v = qkv.split(
        [num_heads * head_dim, num_kv_heads * head_dim, num_kv_heads * head_dim], dim=-1
    )
    q = rms_norm(q.view(-1, num_heads, head_dim), q_weight, eps)
    k = rms_norm(k.view(-1, num_kv_heads, head_dim), k_weight, eps)
    q, k = apply_rotary(positions, q, k, cos, sin)
    return q, k, v.view(-1, num_kv_heads, head_dim)


class Qwen3MLP(nn.Module):
    def __init__(self, spec: ModelSpec, tp: TensorParallel, compile: bool = False):
        super().__init__()
        n = spec.intermediate_size
        self.gate_up_proj = MergedColumnParallelLinear(spec.hidden_size, [n, n], False, tp)
        self.down_proj = RowParallelLinear(n, spec.hidden_size, False, tp)
        self.act = SiluAndMul(compile)

    def forward(self, x):
        return self.down_proj(self.act(self.gate_up_proj(x)))


class Qwen3DecoderLayer(nn.Module):
    def __init__(
        self,
        spec: ModelSpec,
        layer_id: int,
        backend,
        rotary,
        tp: TensorParallel,
        compile: bool = False,
    ):
        super().__init__()
        self.input_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps, compile)
        self.self_attn = Qwen3Attention(spec, layer_id, backend, rotary, tp, compile)
        self.post_attention_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps, compile)
        self.mlp = Qwen3MLP(spec, tp, compile)

    def forward(self, positions, hidden, residual, meta, kv_cache):
        if residual is None:
            hidden, residual = self.input_layernorm(hidden), hidden
        else:
            hidden, residual = self.input_layernorm(hidden, residual)
        hidden = self.self_attn(positions, hidden, meta, kv_cache)
        hidden, residual = self.post_attention_layernorm(hidden, residual)
        return self.mlp(hidden), residual


class Qwen3ForCausalLM(nn.Module):
    # HF weight name fragment -> (our merged parameter, shard id)
    packed_modules_mapping = {
        "q_proj": ("qkv_proj", "q"),
        "k_proj": ("qkv_proj", "k"),
        "v_proj": ("qkv_proj", "v"),
        "gate_proj": ("gate_up_proj", 0),
        "up_proj": ("gate_up_proj", 1),
    }

    def __init__(
        self, spec: ModelSpec, backend: AttentionBackend, tp: TensorParallel, compile: bool = False
    ):
        """``compile``: fuse the small elementwise ops with torch.compile (worth it on CUDA)."""
        super().__init__()
        self.spec = spec
        rotary = RotaryEmbedding(
            spec.head_dim, spec.max_position_embeddings, spec.rope_theta, compile
        )
        self.rotary = rotary
        self.model = nn.Module()
        self.model.embed_tokens = VocabParallelEmbedding(spec.vocab_size, spec.hidden_size, tp)
        self.model.layers = nn.ModuleList(
            Qwen3DecoderLayer(spec, i, backend, rotary, tp, compile)
            for i in range(spec.num_hidden_layers)
        )
        self.model.norm = RMSNorm(spec.hidden_size, spec.rms_norm_eps, compile)
        self.lm_head = ParallelLMHead(spec.vocab_size, spec.hidden_size, tp)
        if spec.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

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
