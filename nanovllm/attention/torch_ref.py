"""Reference backend: pure torch, CPU or GPU. Clear rather than fast; the oracle for the others.

For each sequence it gathers the context's pages through the block table and runs SDPA with a
bottom-right-aligned causal mask (a chunk of new tokens follows an already cached prefix).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nanovllm.attention.metadata import AttentionMetadata


class TorchRefBackend:
    name = "torch_ref"

    def store_kv(self, k, v, k_cache, v_cache, meta: AttentionMetadata) -> None:
        slots = meta.slot_mapping
        keep = slots >= 0
        if not bool(keep.all()):
            k, v, slots = k[keep], v[keep], slots[keep]
        k_cache.view(-1, *k_cache.shape[2:])[slots] = k
        v_cache.view(-1, *v_cache.shape[2:])[slots] = v

    def attend(self, q, k_cache, v_cache, meta: AttentionMetadata, scale: float) -> torch.Tensor:
        if meta.is_decode_only and meta.num_seqs > 1:
            return _attend_decode_batch(q, k_cache, v_cache, meta, scale)
        out = torch.empty_like(q)
        bs = k_cache.size(1)
        group = q.size(1) // k_cache.size(2)
        start = 0
        for b, (q_len, seq_len) in enumerate(zip(meta.query_lens_host, meta.seq_lens_host)):
            blocks = meta.block_tables[b, : -(-seq_len // bs)]
            k = k_cache[blocks].flatten(0, 1)[:seq_len]  # [seq_len, kv_heads, D]
            v = v_cache[blocks].flatten(0, 1)[:seq_len]
            qs = q[start : start + q_len]
            out[start : start + q_len] = _attend_one(qs, k, v, seq_len, group, scale)
            start += q_len
        return out


def causal_mask(q_len: int, seq_len: int, device) -> torch.Tensor:
    """[q_len, seq_len] boolean, True where query row i may see key j: j <= seq_len - q_len + i."""
    rows = torch.arange(q_len, device=device)[:, None] + (seq_len - q_len)
    return torch.arange(seq_len, device=device)[None, :] <= rows


def _attend_one(q, k, v, seq_len: int, group: int, scale: float) -> torch.Tensor:
    q_len = q.size(0)
    if group > 1:
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    mask = causal_mask(q_len, seq_len, q.device)
    o = F.scaled_dot_product_attention(
        q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=mask, scale=scale
    )
    return o.transpose(0, 1)


def _attend_decode_batch(
    q, k_cache, v_cache, meta: AttentionMetadata, scale: float
) -> torch.Tensor:
    """All sequences at once when each has one query token: pad contexts to the longest."""
    bs = k_cache.size(1)
    width = -(-meta.max_seqlen_k // bs)
    tables = meta.block_tables[:, :width]
    k = k_cache[tables].flatten(1, 2)  # [B, width*bs, kv_heads, D]
    v = v_cache[tables].flatten(1, 2)
    keys = torch.arange(k.size(1), device=q.device)
    mask = keys[None, :] < meta.seq_lens[:, None].to(keys.dtype)  # [B, L]
    # Padding slots were never written (the CPU cache is torch.empty): they may hold NaN, which a
    # mask does not neutralize (NaN score + -inf = NaN; 0 weight * NaN value = NaN). Zero them.
    pad = ~mask[:, :, None, None]
    k, v = k.masked_fill(pad, 0), v.masked_fill(pad, 0)
    group = q.size(1) // k.size(2)
    if group > 1:
        k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
    o = F.scaled_dot_product_attention(
        q[:, :, None, :],
        k.transpose(1, 2),
        v.transpose(1, 2),
        attn_mask=mask[:, None, None, :],
        scale=scale,
    )
    return o[:, :, 0, :]
