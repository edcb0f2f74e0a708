"""ModelRunner: StepInputs -> model forward over the paged KV cache -> sampled tokens.

One runner per tensor-parallel rank. It owns the model, the KV cache (one tensor
``[2, layers, blocks, block_size, kv_heads, head_dim]``; each attention layer reads its slice by
``layer_id``), the sampler and, on CUDA, the decode CUDA graphs.

``run(inputs)`` is ``collect(launch(inputs))``. ``launch`` queues the forward and the sampler on
the device and returns at once (on CUDA); ``collect`` waits for that step's tokens. Between the two
the engine may launch the next step (overlap scheduling): an input token written as a placeholder
``-(k + 1)`` (core/sequence.py) is the last launched step's sample row k, and is copied into the
input ids on the device, so the host never waits for it.

Speculative decoding: a step whose inputs carry ``sample_sizes`` samples every position of each
drafted row (runner/inputs.py); ``sampler_output`` groups those tokens per sample row into
``SamplerOutput.targets``, and the scheduler decides what is accepted. Such a step always runs
eager (a captured decode graph has one query token per row) and copies its tokens to the host
before returning (speculation never overlaps steps).

``config.seed`` seeds the sampler's generator, and also Python's ``random``, numpy and torch in the
runner's process, as vLLM's workers do (the caller's process with one rank, each worker with more).
"""

from __future__ import annotations

import gc
import logging
import random
import time
from dataclasses import dataclass

import numpy as np
import torch

from nanovllm.attention import AttentionMetadata, get_backend, resolve_backend_name
from nanovllm.config import CPU_KVCACHE_BYTES, Config
from nanovllm.engine.core.batch import SamplerOutput
from nanovllm.engine.runner.executor import RunTiming
from nanovllm.engine.runner.inputs import StepInputs
from nanovllm.engine.runner.threads import default_cpu_threads, step_threads
from nanovllm.layers.parallel import SINGLE, TensorParallel
from nanovllm.layers.sampler import Sampler, Samples
from nanovllm.models import get_model_class
from nanovllm.utils.loader import load_model
from nanovllm.utils.transfer import to_device

log = logging.getLogger(__name__)


@dataclass
class Launch:
    """A launched step: its samples on the device, and how to know they have arrived."""

    samples: Samples
    # int64 [2, S], the tokens and finite flags: pinned, filled asynchronously on CUDA
    host: torch.Tensor
    timing: RunTiming  # host times on CPU; filled from the events on CUDA
    events: tuple[torch.cuda.Event, ...] = ()  # CUDA: start, logits done, samples copied
    overlappable: bool = True  # collect() never waits for a step launched after this one
    sample_sizes: np.ndarray | None = None  # speculative decoding: logits rows per sample row


class ModelRunner:  # an Executor (runner/executor.py) for one rank
    def __init__(self, config: Config, tp: TensorParallel = SINGLE):
        self.config, self.tp = config, tp
        self.device = torch.device(config.device if config.device != "cuda" else f"cuda:{tp.rank}")
        self.dtype = getattr(torch, config.dtype)  # config.DTYPES holds torch's own names
        self.block_size = config.kvcache_block_size
        self.is_cuda = self.device.type == "cuda"
        if self.is_cuda:
            torch.cuda.set_device(self.device)
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)
        # CPU: the threads of each step (runner/threads.py); CUDA: the host's threads untouched
        self.cpu_threads = None if self.is_cuda else config.cpu_threads or default_cpu_threads()
        t0 = time.perf_counter()
        self.startup: dict[str, float] = {}  # seconds of each part of the start (bench.py prints)
        self.backend_name = resolve_backend_name(config.attention_backend, config.device)
        backend = get_backend(self.backend_name)
        with torch.device(self.device):
            default_dtype = torch.get_default_dtype()
            torch.set_default_dtype(self.dtype)
            try:
                self.model = get_model_class(config.spec.architecture)(
                    config.spec, backend, tp, config.elementwise, config.fused_kv_store
                )
            finally:
                torch.set_default_dtype(default_dtype)
        load_model(self.model, config.model, config.load_format)
        self.model.eval()
        self.startup["model_s"] = time.perf_counter() - t0
        self.sampler = Sampler(self.device, config.seed)
        self.last_tokens: torch.Tensor | None = None  # the last launched step's samples, on device
        self._pinned: torch.Tensor | None = None  # CUDA: [2 launches, 2 * max_num_seqs] int64
        self._num_launches = 0
        self.graphs = None
        self.memory_report: dict | None = None
        self.kv_cache = None
        t1 = time.perf_counter()
        self.num_kvcache_blocks = config.num_kvcache_blocks or self._auto_num_blocks()
        self.kv_cache = self.allocate_kv_cache(self.num_kvcache_blocks)
        self.startup["kv_cache_s"] = time.perf_counter() - t1  # the memory probe, then the cache
        # torch_ref and cpu_sdpa loop over host-side lengths, which a captured graph would
        # freeze: eager only.
        self.gemm_plan: list = []  # layers/skinny_plan.py's PlanRows: which GEMMs left cuBLAS
        if self.is_cuda and not config.enforce_eager and self.backend_name == "triton":
            from nanovllm.engine.runner.cuda_graph import DecodeGraphs, bucket_sizes

            if config.skinny_gemm:
                self._plan_gemms(bucket_sizes(min(config.max_num_seqs, 512)))
            self.graphs = DecodeGraphs(
                self.model,
                self.kv_cache,
                max_num_seqs=config.max_num_seqs,
                max_blocks_per_seq=config.max_blocks_per_seq,
                block_size=self.block_size,
                hidden_size=config.spec.hidden_size,
            )
            self.startup["graph_capture_s"] = self.graphs.capture_seconds
        self.startup = {k: round(v, 2) for k, v in self.startup.items()}

    def _plan_gemms(self, buckets: list[int]) -> None:
        """Before capture: the skinny-GEMM kernel where it beats cuBLAS (layers/skinny_plan.py)."""
        from nanovllm.layers.linear import LinearBase
        from nanovllm.layers.skinny_plan import plan_linears

        t0 = time.perf_counter()
        linears = [m for m in self.model.modules() if isinstance(m, LinearBase)]
        self.gemm_plan = plan_linears(linears, buckets)
        self.startup["gemm_plan_s"] = time.perf_counter() - t0
        if self.tp.rank == 0:
            for row in self.gemm_plan:
                log.info("GEMM plan: %s", row)

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
        """What the memory allows (the probe on CUDA, a fixed budget on CPU), capped at what the
        configuration can use (``Config.auto_num_blocks``); the cap is logged and reported."""
        if self.is_cuda:
            from nanovllm.engine.runner.memory import probe_kv_budget

            budget, self.memory_report = probe_kv_budget(
                self.config, self.allocate_kv_cache, self.forward_logits
            )
        else:
            budget, self.memory_report = (
                CPU_KVCACHE_BYTES,
                {"kv_budget_gib": CPU_KVCACHE_BYTES / 2**30},
            )
        num_blocks, cap = self.config.auto_num_blocks(budget)
        if not self.is_cuda:  # a fixed budget, not a measurement: always room for one sequence
            num_blocks = max(num_blocks, self.config.max_blocks_per_seq)
        self.memory_report.update(num_blocks=num_blocks, capped_at=cap)
        self.memory_report["kv_cache_gib"] = num_blocks * self.config.kv_bytes_per_block / 2**30
        if cap is not None and self.tp.rank == 0:
            log.info(
                "KV cache: %d blocks, capped at what max_num_seqs=%d x %d blocks per sequence "
                "(+ prefix_cache_blocks) can use; the memory budget allowed %d",
                num_blocks,
                self.config.max_num_seqs,
                self.config.max_blocks_per_seq,
                budget // self.config.kv_bytes_per_block,
            )
        return num_blocks

    # ---- one step --------------------------------------------------------------------------------
    def to_device(self, inputs: StepInputs) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata]:
        def t(a: np.ndarray) -> torch.Tensor:
            return to_device(a, self.device)

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
            self._fill_pending(self.graphs.load(inputs), inputs.input_ids)
            hidden = self.graphs.replay(inputs.num_seqs)
            # a decode-only step samples every row: no gather needed
            return self.model.compute_logits(hidden)
        input_ids, positions, meta = self.to_device(inputs)
        self._fill_pending(input_ids, inputs.input_ids)
        cache = self.kv_cache if kv_cache is None else kv_cache
        hidden = self.model(input_ids, positions, meta, cache)
        idx = to_device(inputs.logits_indices, self.device)
        return self.model.compute_logits(hidden[idx])

    def _fill_pending(self, ids: torch.Tensor, host_ids: np.ndarray) -> None:
        """Write each placeholder ``-(k + 1)`` of ``host_ids`` as the last launched step's sample
        row k, into ``ids`` (the same tokens, on the device), without a round trip to the host."""
        dst = np.flatnonzero(host_ids < 0)
        if not len(dst):
            return
        if self.last_tokens is None:
            raise RuntimeError("the inputs hold pending tokens, but no step was launched before")
        src = -host_ids[dst] - 1
        n = len(dst)
        if dst[-1] == n - 1 and src[-1] == n - 1 and (n == 1 or (np.diff(src) == 1).all()):
            ids[:n] = self.last_tokens[:n]  # the usual decode step: rows 0..n-1 in order
            return
        index = to_device(np.stack([dst, src]), self.device)
        ids[index[0]] = self.last_tokens[index[1]]

    def launch(self, inputs: StepInputs) -> Launch:
        """Queue the forward and the sampler (rank 0), and the copy of the tokens to the host."""
        timing = RunTiming()
        events = ()
        t0 = time.perf_counter()
        if self.is_cuda:
            events = tuple(torch.cuda.Event(enable_timing=True) for _ in range(3))
            events[0].record()
        with step_threads(self.cpu_threads):
            logits = self.forward_logits(inputs)
            t1 = time.perf_counter()
            if self.is_cuda:
                events[1].record()
            samples = self.sampler.sample(logits, inputs.sampling)
        self.last_tokens = samples.tokens
        host = samples.host_tensor()
        if self.is_cuda:
            if inputs.sample_sizes is None:
                host = self._pinned_buffer(host.shape[1]).copy_(host, non_blocking=True)
            else:  # speculation: more rows than the pinned buffer holds, and no overlap
                host = host.cpu()
            events[2].record()
        else:
            timing.forward, timing.sample = t1 - t0, time.perf_counter() - t1
        # Log-probabilities and MoE expert counts are read with blocking copies in collect(),
        # which would wait for any step launched after this one.
        overlappable = samples.logprobs is None and not hasattr(self.model, "expert_tokens")
        overlappable &= inputs.sample_sizes is None
        return Launch(samples, host, timing, events, overlappable, inputs.sample_sizes)

    def _pinned_buffer(self, n: int) -> torch.Tensor:
        """Pinned host memory for one launch's tokens; two launches can be in flight at once."""
        if self._pinned is None:
            size = max(self.config.max_num_seqs, 1)
            self._pinned = torch.empty((2, 2 * size), dtype=torch.int64).pin_memory()
        self._num_launches += 1
        return self._pinned[self._num_launches % 2, : 2 * n].view(2, n)  # contiguous

    def collect(self, launch: Launch) -> tuple[SamplerOutput, RunTiming]:
        """Wait for a launched step's tokens; its ``SamplerOutput`` and timing. Forward and sample
        times are device times from CUDA events on GPU."""
        timing = launch.timing
        if launch.events:
            start, logits_done, copied = launch.events
            copied.synchronize()
            timing.forward = start.elapsed_time(logits_done) / 1e3
            timing.sample = logits_done.elapsed_time(copied) / 1e3
        out = sampler_output(launch.samples, launch.host, launch.sample_sizes)
        if hasattr(self.model, "expert_tokens"):
            timing.expert_tokens = self.model.expert_tokens().cpu().numpy()
        return out, timing

    def run(self, inputs: StepInputs) -> tuple[SamplerOutput, RunTiming]:
        """Forward and sample one step, and wait for its tokens."""
        return self.collect(self.launch(inputs))

    def close(self) -> None:
        self.graphs = None
        self.kv_cache = None
        self.model = None
        self.last_tokens = self._pinned = None
        if self.is_cuda:
            # the cache and weights may still sit in reference cycles (compiled functions, the
            # graphs' pool): collect them, so the next engine's memory probe finds the memory free
            gc.collect()
            torch.cuda.empty_cache()


def sampler_output(
    samples: Samples, host: torch.Tensor | None = None, sample_sizes: np.ndarray | None = None
) -> SamplerOutput:
    """Core's host-side ``SamplerOutput`` of what the sampler drew (``host``:
    ``samples.host_tensor()`` already on the host). The sampler returns tensors; the runner makes
    the core object. ``sample_sizes``: a speculative step's logits rows per sample row, grouped
    into ``targets`` (a sample row is finite when all its positions are)."""
    token_list, finite = (samples.host_tensor() if host is None else host).tolist()
    if sample_sizes is not None:
        return _grouped_output(token_list, finite, sample_sizes.tolist())
    n = len(token_list)
    logprobs, top, ranks = [None] * n, [None] * n, [None] * n
    if samples.logprobs is not None:
        samples.logprobs.fill(logprobs, top, ranks)
    return SamplerOutput(token_list, logprobs, top, [bool(f) for f in finite], ranks)


def _grouped_output(tokens: list[int], finite: list[int], sizes: list[int]) -> SamplerOutput:
    targets, ok, i = [], [], 0
    for n in sizes:
        targets.append(tuple(tokens[i : i + n]))
        ok.append(all(finite[i : i + n]))
        i += n
    out = SamplerOutput.of_tokens([t[0] for t in targets])
    out.finite, out.targets = ok, targets
    return out
