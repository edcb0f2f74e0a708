"""What the engine reads from a checkpoint's config.json: ``ModelSpec`` (with its rope scaling
and mixture-of-experts parts), parsed once by ``ModelSpec.from_dict``.

Features a family's config may ask for that are not implemented (other rope scalings, partial
rotary, activations other than SiLU) raise ``UnsupportedModelError`` here, at parse time; whether
a sliding window matters depends on ``max_model_len``, so ``Config`` checks that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nanovllm.errors import UnsupportedModelError


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3's "llama3" rope scaling: long wavelengths are stretched by ``factor``, short ones
    kept, the band between smoothly interpolated (the numbers of config.json's ``rope_scaling``)."""

    rope_type: str
    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclass(frozen=True)
class MoESpec:
    """A sparse MLP (Qwen3-MoE): each token goes to ``top_k`` of ``num_experts`` experts."""

    num_experts: int
    top_k: int
    moe_intermediate_size: int
    norm_topk_prob: bool
    decoder_sparse_step: int = 1
    mlp_only_layers: tuple[int, ...] = ()

    def is_sparse(self, layer_id: int) -> bool:
        """Whether layer ``layer_id`` has experts (else a dense MLP), as HF decides it."""
        return (
            layer_id not in self.mlp_only_layers and (layer_id + 1) % self.decoder_sparse_step == 0
        )


@dataclass(frozen=True)
class ModelSpec:
    """The few facts of a checkpoint's config.json the engine needs, read once."""

    architecture: str
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    max_position_embeddings: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    eos_token_id: tuple[int, ...]
    torch_dtype: str | None = None
    attention_bias: bool = False
    mlp_bias: bool = False
    rope_scaling: RopeScaling | None = None
    sliding_window: int | None = None  # the window any layer attends within; None: full attention
    moe: MoESpec | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelSpec:
        archs = raw.get("architectures") or []
        heads = raw["num_attention_heads"]
        eos = raw.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,))
        act = raw.get("hidden_act", "silu")
        if act != "silu":
            raise UnsupportedModelError(
                f"hidden_act={act!r} is not supported (only 'silu', as in every supported family)"
            )
        return cls(
            architecture=archs[0] if archs else raw.get("model_type", "unknown"),
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            num_hidden_layers=raw["num_hidden_layers"],
            num_attention_heads=heads,
            num_key_value_heads=raw.get("num_key_value_heads") or heads,
            head_dim=raw.get("head_dim") or raw["hidden_size"] // heads,
            intermediate_size=raw["intermediate_size"],
            max_position_embeddings=raw.get("max_position_embeddings", 4096),
            rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
            rope_theta=raw.get("rope_theta")
            or (raw.get("rope_parameters") or {}).get("rope_theta", 10000.0),
            tie_word_embeddings=raw.get("tie_word_embeddings", False),
            eos_token_id=eos_ids,
            torch_dtype=raw.get("torch_dtype") or raw.get("dtype"),
            attention_bias=raw.get("attention_bias", False),
            mlp_bias=raw.get("mlp_bias", False),
            rope_scaling=_rope_scaling(raw),
            sliding_window=_sliding_window(raw),
            moe=_moe(raw),
        )

    def kv_bytes_per_token(self, dtype_bytes: int, tp_size: int = 1) -> int:
        kv_heads = max(1, self.num_key_value_heads // tp_size)
        return 2 * self.num_hidden_layers * kv_heads * self.head_dim * dtype_bytes


def _rope_scaling(raw: dict[str, Any]) -> RopeScaling | None:
    """config.json's ``rope_scaling`` (transformers 4 and released checkpoints) or
    ``rope_parameters`` (transformers 5). Only the default and "llama3" rotary are implemented."""
    params = raw.get("rope_scaling") or raw.get("rope_parameters") or {}
    kind = params.get("rope_type") or params.get("type") or "default"
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise UnsupportedModelError(
            f"partial_rotary_factor={params['partial_rotary_factor']} is not supported; "
            f"only rotary over the whole head_dim is implemented"
        )
    if kind == "default":
        return None
    if kind != "llama3":
        raise UnsupportedModelError(
            f"rope scaling rope_type={kind!r} is not supported; implemented: 'default', 'llama3'"
        )
    return RopeScaling(
        rope_type=kind,
        factor=float(params["factor"]),
        low_freq_factor=float(params["low_freq_factor"]),
        high_freq_factor=float(params["high_freq_factor"]),
        original_max_position_embeddings=int(params["original_max_position_embeddings"]),
    )


def _sliding_window(raw: dict[str, Any]) -> int | None:
    """The attention window some layer uses, or None when every layer attends to all tokens.

    Mistral applies ``sliding_window`` to every layer; the Qwen families only with
    ``use_sliding_window`` and only to layers ``>= max_window_layers`` (HF's rule)."""
    window = raw.get("sliding_window")
    if window is None:
        return None
    if "use_sliding_window" in raw:
        if not raw["use_sliding_window"]:
            return None
        if raw.get("max_window_layers", 0) >= raw["num_hidden_layers"]:
            return None
    layer_types = raw.get("layer_types")
    if layer_types is not None and "sliding_attention" not in layer_types:
        return None
    return int(window)


def _moe(raw: dict[str, Any]) -> MoESpec | None:
    experts = raw.get("num_experts") or raw.get("num_local_experts") or 0
    if not experts:
        return None
    return MoESpec(
        num_experts=experts,
        top_k=raw["num_experts_per_tok"],
        moe_intermediate_size=raw["moe_intermediate_size"],
        norm_topk_prob=raw.get("norm_topk_prob", False),
        decoder_sparse_step=raw.get("decoder_sparse_step") or 1,
        mlp_only_layers=tuple(raw.get("mlp_only_layers") or ()),
    )
