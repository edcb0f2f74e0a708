"""The default GPU backend: our own Triton kernels (nanovllm/attention/triton_kernels.py)."""

from __future__ import annotations

from nanovllm.attention.metadata import AttentionMetadata
from nanovllm.attention.triton_kernels import paged_attention, store_kvcache


class TritonBackend:
    name = "triton"

    def store_kv(self, k, v, k_cache, v_cache, meta: AttentionMetadata) -> None:
        store_kvcache(k, v, k_cache, v_cache, meta.slot_mapping)

    def attend(self, q, k_cache, v_cache, meta: AttentionMetadata, scale: float):
        return paged_attention(
            q,
            k_cache,
            v_cache,
            meta.cu_seqlens_q,
            meta.seq_lens,
            meta.block_tables,
            max_seqlen_q=meta.max_seqlen_q,
            scale=scale,
        )
