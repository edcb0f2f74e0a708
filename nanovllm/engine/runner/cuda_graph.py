"""CUDA graphs for decode steps (GPU only).

A decode step launches hundreds of small kernels; replaying a captured graph launches them all at
once. One graph per batch-size bucket (2, 4, 8, 16, 32, ... up to max_num_seqs), all sharing one
memory pool. Inputs are copied into static buffers first; a batch is padded up to its bucket with
rows that store nothing (slot -1) and attend to nothing (seq_len 0). Block tables are padded to
the fixed width ``max_blocks_per_seq``, so the attention kernel's launch shape never changes.
"""

from __future__ import annotations

import time

import torch

from nanovllm.attention import AttentionMetadata
from nanovllm.engine.runner.inputs import StepInputs


def bucket_sizes(max_num_seqs: int) -> list[int]:
    """Batch sizes with a graph. No graph of one row (unless max_num_seqs is 1): one decode runs
    the graph of two, a padding row beside it. With ``elementwise="compile"`` a graph of one
    would cost a recompile of every compiled function (torch.compile specializes size 1), about
    4.5 s of the engine's start."""
    sizes = [b for b in (2, 4, 8) if b < max_num_seqs]
    sizes += list(range(16, max_num_seqs, 16))
    return sizes + [max_num_seqs]


class DecodeGraphs:
    """Captured decode graphs of ``model`` over ``kv_cache`` (the tensors are read at replay, so the
    cache must stay the same object for the graphs' lifetime)."""

    def __init__(
        self,
        model,
        kv_cache: torch.Tensor,
        *,
        max_num_seqs: int,
        max_blocks_per_seq: int,
        block_size: int,
        hidden_size: int,
    ):
        self.model, self.kv_cache, self.block_size = model, kv_cache, block_size
        self.buckets = bucket_sizes(min(max_num_seqs, 512))
        self.max_bs = self.buckets[-1]
        self.width = max_blocks_per_seq
        dev = kv_cache.device
        n = self.max_bs
        # host staging (pinned) and device buffers: ids | positions | slots | seq_lens, then tables.
        # Two staging sets, used in turn: with overlap scheduling the next step is loaded while
        # this one's copies may still wait in the stream (they are done once its tokens are).
        self.host = torch.zeros(2, 4 * n, dtype=torch.int64).pin_memory()
        self.host_tables = torch.zeros(2, n, self.width, dtype=torch.int32).pin_memory()
        self._turn = 0
        self.dev = torch.zeros(4 * n, dtype=torch.int64, device=dev)
        self.input_ids, self.positions, self.slots, seq_lens64 = self.dev.view(4, n)
        self.seq_lens = torch.zeros(n, dtype=torch.int32, device=dev)
        self.seq_lens64 = seq_lens64
        self.block_tables = torch.zeros(n, self.width, dtype=torch.int32, device=dev)
        self.cu_seqlens_q = torch.arange(n + 1, dtype=torch.int32, device=dev)
        self.hidden = torch.zeros(n, hidden_size, dtype=kv_cache.dtype, device=dev)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.capture_times: dict[int, float] = {}  # bucket -> seconds (warm-up run + capture)
        t0 = time.perf_counter()
        self._capture_all()
        self.capture_seconds = time.perf_counter() - t0

    def _meta(self, bs: int) -> AttentionMetadata:
        return AttentionMetadata(
            slot_mapping=self.slots[:bs],
            cu_seqlens_q=self.cu_seqlens_q[: bs + 1],
            seq_lens=self.seq_lens[:bs],
            block_tables=self.block_tables[:bs],
            max_seqlen_q=1,
            max_seqlen_k=self.width * self.block_size,
            query_lens_host=[1] * bs,
            seq_lens_host=[self.width * self.block_size] * bs,
        )

    def _forward(self, bs: int) -> None:
        self.hidden[:bs] = self.model(
            self.input_ids[:bs], self.positions[:bs], self._meta(bs), self.kv_cache
        )

    @torch.inference_mode()
    def _capture_all(self) -> None:
        self.slots.fill_(-1)  # capture-time runs must not write into the cache
        pool = None
        for bs in reversed(self.buckets):  # largest first: the pool fits every smaller graph
            t0 = time.perf_counter()
            self._forward(bs)  # warm-up: compiles kernels outside the capture
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool):
                self._forward(bs)
            pool = pool or graph.pool()
            self.graphs[bs] = graph
            torch.cuda.synchronize()
            self.capture_times[bs] = time.perf_counter() - t0

    def can_run(self, inputs: StepInputs) -> bool:
        return (
            inputs.is_decode_only
            and inputs.num_seqs <= self.max_bs
            and inputs.block_tables.shape[1] <= self.width
        )

    def load(self, inputs: StepInputs) -> torch.Tensor:
        """Copy a decode step's inputs into the static buffers; returns the input-id buffer (its
        first ``num_seqs`` rows), where the runner may still write tokens on the device."""
        n = inputs.num_seqs
        bs = self.bucket(n)
        self._turn ^= 1
        staging, staging_tables = self.host[self._turn], self.host_tables[self._turn]
        host = staging.numpy().reshape(4, self.max_bs)
        host[0, :n], host[1, :n], host[2, :n], host[3, :n] = (
            inputs.input_ids,
            inputs.positions,
            inputs.slot_mapping,
            inputs.seq_lens,
        )
        # padding rows: a valid token id (the staging set may hold an older step's placeholders),
        # store nothing, attend to nothing
        host[0, n:bs], host[2, n:bs], host[3, n:bs] = 0, -1, 0
        tables = staging_tables.numpy()
        w = inputs.block_tables.shape[1]
        tables[:n, :w] = inputs.block_tables
        # Whole contiguous buffers: one pinned, asynchronous copy each. Stale table columns past a
        # sequence's blocks are never read (the kernel stops at seq_len).
        self.dev.copy_(staging, non_blocking=True)
        self.block_tables[:n].copy_(staging_tables[:n], non_blocking=True)
        self.seq_lens[:bs].copy_(self.seq_lens64[:bs])
        return self.input_ids[:n]

    def bucket(self, n: int) -> int:
        return next(b for b in self.buckets if b >= n)

    def replay(self, n: int) -> torch.Tensor:
        """Run the graph of ``n`` rows' bucket over what ``load`` put in place."""
        self.graphs[self.bucket(n)].replay()
        return self.hidden[:n]
