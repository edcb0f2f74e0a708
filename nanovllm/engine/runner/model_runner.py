"""ModelRunner: StepInputs -> model forward over the paged KV cache -> sampled tokens.

One runner per tensor-parallel rank. It owns the model, the KV cache (one tensor
``[2, layers, blocks, block_size, kv_heads, head_dim]``; each attention layer reads its slice by
``layer_id``), the sampler and, on CUDA, the decode CUDA graphs.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from nanovllm.attention import AttentionMetadata, get_backend, resolve_backend_name
from nanovllm.config import Config
from nanovllm.engine.core.batch import SamplerOutput
from nanovllm.engine.runner.executor import RunTiming
from nanovllm.engine.runner.inputs import StepInputs
from nanovllm.layers.parallel import SINGLE, TensorParallel
from nanovllm.layers.sampler import Sampler
from nanovllm.models import get_model_class
from nanovllm.utils.loader import load_model


class ModelRunner:  # an Executor (runner/executor.py) for one rank
    def __init__(self, config: Config, tp: TensorParallel = SINGLE):
        self.config, self.tp = config, tp
        self.device = torch.device(config.device if config.device != "cuda" else f"cuda:{tp.rank}")
        self.dtype = getattr(torch, config.dtype)  # config.DTYPES holds torch's own names
        self.block_size = config.kvcache_block_size
        self.is_cuda = self.device.type == "cuda"
        if self.is_cuda:
            torch.cuda.set_device(self.device)
        self.backend_name = resolve_backend_name(config.attention_backend, config.device)
        backend = get_backend(self.backend_name)
        with torch.device(self.device):
            default_dtype = torch.get_default_dtype()
            torch.set_default_dtype(self.dtype)
            try:
                compile_ops = self.is_cuda and not config.enforce_eager
                self.model = get_model_class(config.spec.architecture)(
                    config.spec, backend, tp, compile_ops
                )
            finally:
                torch.set_default_dtype(default_dtype)
        load_model(self.model, config.model, config.load_format)
        self.model.eval()
        self.sampler = Sampler(self.device, config.seed)
        self.graphs = None
        self.memory_report: dict | None = None
        self.kv_cache = None
        self.num_kvcache_blocks = config.num_kvcache_blocks or self._auto_num_blocks()
        self.kv_cache = self.allocate_kv_cache(self.num_kvcache_blocks)
        # torch_ref loops over host-side lengths, which a captured graph would freeze: eager only.
        if self.is_cuda and not config.enforce_eager and self.backend_name != "torch_ref":
            from nanovllm.engine.runner.cuda_graph import DecodeGraphs

            self.graphs = DecodeGraphs(
                self.model,
                self.kv_cache,
                max_num_seqs=config.max_num_seqs,
                max_blocks_per_seq=config.max_blocks_per_seq,
                block_size=self.block_size,
                hidden_size=config.spec.hidden_size,
            )

    # ---- memory ----------------------------------------------------------------------------------
    def _kv_shape(self, num_blocks: int) -> tuple[int, ...]:
        spec = self.config.spec
        kv_heads = spec.num_key_value_heads // self.tp.size
        return (2, spec.num_hidden_layers, num_blocks, self.block_size, kv_heads, spec.head_dim)

    def allocate_kv_cache(self, num_blocks: int) -> torch.Tensor:
        # CPU: empty (untouched pages cost nothing); kernels never read a slot nobody wrote.
        alloc = torch.zeros if self.is_cuda else torch.empty
        return alloc(self._kv_shape(num_blocks), dtype=self.dtype, device=self.device)

    def _auto_num_blocks(self) -> int:
        if not self.is_cuda:
            return self.config.default_cpu_num_blocks()
        from nanovllm.engine.runner.memory import probe_num_blocks

        num_blocks, self.memory_report = probe_num_blocks(
            self.config, self.allocate_kv_cache, self.forward_logits
        )
        return num_blocks

    # ---- one step --------------------------------------------------------------------------------
    def to_device(self, inputs: StepInputs) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata]:
        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).to(self.device, non_blocking=True)

        query_lens = np.diff(inputs.cu_seqlens_q)
        meta = AttentionMetadata(
            slot_mapping=t(inputs.slot_mapping),
            cu_seqlens_q=t(inputs.cu_seqlens_q),
            seq_lens=t(inputs.seq_lens),
            block_tables=t(inputs.block_tables),
            max_seqlen_q=int(query_lens.max()),
            max_seqlen_k=int(inputs.seq_lens.max()),
            query_lens_host=query_lens.tolist(),
            seq_lens_host=inputs.seq_lens.tolist(),
        )
        return t(inputs.input_ids), t(inputs.positions), meta

    @torch.inference_mode()
    def forward_logits(
        self, inputs: StepInputs, kv_cache: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """The model's logits at ``inputs.logits_indices`` (None on ranks other than 0), over
        ``kv_cache`` (default: the runner's own; the memory probe passes a small one)."""
        if kv_cache is None and self.graphs is not None and self.graphs.can_run(inputs):
            hidden = self.graphs.run(inputs)
        else:
            input_ids, positions, meta = self.to_device(inputs)
            cache = self.kv_cache if kv_cache is None else kv_cache
            hidden = self.model(input_ids, positions, meta, cache)
        idx = torch.from_numpy(inputs.logits_indices).to(self.device, non_blocking=True)
        return self.model.compute_logits(hidden[idx])

    def run(self, inputs: StepInputs) -> tuple[SamplerOutput, RunTiming]:
        """Forward and sample (rank 0). Forward time is device time from CUDA events on GPU."""
        timing = RunTiming()
        t0 = time.perf_counter()
        if self.is_cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        logits = self.forward_logits(inputs)
        t1 = time.perf_counter()
        if self.is_cuda:
            end.record()
        out = self.sampler(logits, inputs.sampling)  # .tolist() inside synchronizes
        t2 = time.perf_counter()
        if self.is_cuda:
            end.synchronize()  # usually done (.tolist() synced), but not when nothing sampled
            timing.forward = start.elapsed_time(end) / 1e3
            timing.sample = max(0.0, (t2 - t0) - timing.forward)
        else:
            timing.forward, timing.sample = t1 - t0, t2 - t1
        if hasattr(self.model, "expert_tokens"):  # after sampling synced: a small copy, no stall
            timing.expert_tokens = self.model.expert_tokens().cpu().numpy()
        return out, timing

    def close(self) -> None:
        self.graphs = None
        self.kv_cache = None
        self.model = None
        if self.is_cuda:
            torch.cuda.empty_cache()
