"""KV-cache sizing on CUDA: run the largest step once, then give the cache what is left of
``gpu_memory_utilization x total`` after weights, the activation peak and everything else."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from nanovllm.engine.runner.inputs import StepInputs, slot_mapping
from nanovllm.layers.sampling_batch import SamplingBatch


def warmup_inputs(config, num_tokens: int, block_offset: int = 0) -> StepInputs:
    """Prefill of ``num_tokens`` tokens split into sequences of at most max_model_len."""
    per_seq = min(config.max_model_len, num_tokens)
    num_seqs = max(1, min(config.max_num_seqs, num_tokens // per_seq))
    bs = config.kvcache_block_size
    blocks = math.ceil(per_seq / bs)
    lens = np.full(num_seqs, per_seq, dtype=np.int32)
    cu = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    tables = np.arange(num_seqs * blocks, dtype=np.int32).reshape(num_seqs, blocks) + block_offset
    pos = np.tile(np.arange(per_seq), num_seqs)
    seq = np.repeat(np.arange(num_seqs), per_seq)
    slots = slot_mapping(tables, seq, pos, bs)
    n = num_seqs
    return StepInputs(
        input_ids=np.zeros(len(pos), dtype=np.int64),
        positions=pos.astype(np.int64),
        slot_mapping=slots,
        cu_seqlens_q=cu,
        seq_lens=lens,
        block_tables=tables,
        logits_indices=(cu[1:] - 1).astype(np.int64),
        sampling=SamplingBatch([1.0] * n, [None] * n, [1.0] * n, [None] * n, [0] * n, [None] * n),
    )


def probe_kv_budget(
    config, allocate_kv_cache: Callable[[int], torch.Tensor], forward_logits: Callable
) -> tuple[int, dict]:
    """The bytes the KV cache may take, and a report of where the memory went. Runs the largest
    step once, ``forward_logits(inputs, kv_cache)``, over a cache just big enough for it."""
    inputs = warmup_inputs(config, config.max_num_batched_tokens)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    warm_cache = allocate_kv_cache(int(inputs.block_tables.size))
    forward_logits(inputs, warm_cache)
    torch.cuda.synchronize()
    del warm_cache
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info()
    stats = torch.cuda.memory_stats()
    peak, current = stats["allocated_bytes.all.peak"], stats["allocated_bytes.all.current"]
    return kv_budget(total, free, peak, current, config.gpu_memory_utilization)


def kv_budget(
    total: int, free: int, peak: int, current: int, utilization: float
) -> tuple[int, dict]:
    """``utilization x total`` less what is in use (weights, other processes) and the activation
    peak above it: the KV cache's bytes, and the report. Pure arithmetic (tested on CPU)."""
    budget = int(total * utilization) - (total - free) - (peak - current)
    report = dict(
        total_gib=total / 2**30,
        weights_gib=current / 2**30,
        activation_peak_gib=(peak - current) / 2**30,
        kv_budget_gib=max(0, budget) / 2**30,
    )
    return max(0, budget), report
