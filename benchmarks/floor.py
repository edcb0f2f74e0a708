"""The physical floor of ../shared/BENCH.md's workload, for dense and mixture-of-experts models.

Dense: KV reads (every decode token reads its context once) + weights (``max(out)`` decode steps,
each reading every weight) over the copy bandwidth ``B``, plus ``2 * params * tokens`` over the
matmul rate ``F``.

MoE (counted so the floor stays a floor):
- matmuls: a token multiplies only by the experts it is routed to, so
  ``params`` becomes the active parameters ``dense + top_k * expert`` per token;
- weights: decode step ``i`` of the ideal schedule (every request running from the start) holds
  ``n_i`` tokens, those with ``max_tokens > i``; it reads the dense weights and, in each sparse
  layer, every expert that at least one of its tokens chose. With uniform routing a step touches
  ``E * (1 - (1 - k/E) ** n_i)`` experts per layer (about all of them once ``n_i`` > 40); the
  bench prints the measured count next to it.
"""

from __future__ import annotations

import statistics
from math import prod

import torch


def measure_bandwidth() -> float:
    """Bytes read + written per second by a large device-to-device copy (median of 10)."""
    src = torch.randn(2 * 2**30 // 4, device="cuda")
    dst = torch.empty_like(src)
    times = []
    for _ in range(12):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * src.numel() * 4 / statistics.median(times[2:])


def measure_matmul() -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    times = []
    for _ in range(12):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * 8192**3 / statistics.median(times[2:])


def spec_config(spec) -> dict:
    """The config dict ``testing.random_model.tensor_shapes`` reads, from a ModelSpec."""
    c = dict(
        architectures=[spec.architecture],
        hidden_size=spec.hidden_size,
        head_dim=spec.head_dim,
        intermediate_size=spec.intermediate_size,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        num_hidden_layers=spec.num_hidden_layers,
        vocab_size=spec.vocab_size,
        tie_word_embeddings=spec.tie_word_embeddings,
        attention_bias=spec.attention_bias,
        mlp_bias=spec.mlp_bias,
    )
    if spec.moe is not None:
        m = spec.moe
        c.update(
            num_experts=m.num_experts,
            moe_intermediate_size=m.moe_intermediate_size,
            decoder_sparse_step=m.decoder_sparse_step,
            mlp_only_layers=list(m.mlp_only_layers),
        )
    return c


def count_params(spec) -> int:
    """All parameters (a tied head counted once)."""
    from nanovllm.testing.random_model import tensor_shapes

    return sum(prod(s) for s in tensor_shapes(spec_config(spec)).values())


def expert_params(spec) -> tuple[int, int]:
    """(parameters of one expert, number of sparse layers); (0, 0) for a dense model."""
    if spec.moe is None:
        return 0, 0
    sparse = sum(spec.moe.is_sparse(i) for i in range(spec.num_hidden_layers))
    return 3 * spec.hidden_size * spec.moe.moe_intermediate_size, sparse


def touched_experts(num_experts: int, top_k: int, num_tokens: int) -> float:
    """Expected distinct experts chosen by ``num_tokens`` tokens routed uniformly, k each."""
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** num_tokens)


def floor_seconds(spec, num_params: int, prompts, params, bw: float, flops: float, tp: int = 1):
    kv_per_token = 2 * spec.num_hidden_layers * spec.num_key_value_heads * spec.head_dim * 2
    outs = [sp.max_tokens for sp in params]
    kv_tokens = sum(out * len(p) + out * (out - 1) // 2 for p, out in zip(prompts, outs))
    total_tokens = sum(map(len, prompts)) + sum(outs)
    per_expert, sparse_layers = expert_params(spec)
    if spec.moe is None:
        step_bytes = [num_params * 2] * max(outs)
        active = num_params
    else:
        e, k = spec.moe.num_experts, spec.moe.top_k
        dense = num_params - per_expert * e * sparse_layers
        running = [sum(o > i for o in outs) for i in range(max(outs))]
        step_bytes = [
            2 * (dense + sparse_layers * touched_experts(e, k, n) * per_expert) for n in running
        ]
        active = dense + k * per_expert * sparse_layers
    terms = dict(
        kv_s=kv_tokens * kv_per_token / bw / tp,
        weights_s=sum(step_bytes) / bw / tp,
        matmul_s=2 * active * total_tokens / flops / tp,
    )
    terms["floor_s"] = sum(terms.values())
    return terms
