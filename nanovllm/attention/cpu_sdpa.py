"""The CPU backend: the reference's attention (torch_ref.py), arranged so a CPU does each piece of
work once. Tests check that the two agree.

What the reference spends a CPU step on, per layer: gathering every sequence's pages again,
padding them to the longest context, repeating each KV head for its query heads, and allocating
all of it fresh (a fresh tensor of 100 MB costs its page faults, more than the copy itself). Here:

- Once per step (``plan_step``, kept on the metadata for every layer): the decode rows (one query
  token each) sorted by context length and cut into groups whose longest context is at most
  ``GROUP_RATIO`` times their shortest (little is padded) and whose gathered K and V fit in
  ``GROUP_BYTES`` (an L2 cache); per group the cache slot of every context position, padding
  repeating position 0's slot (a written slot, masked out)::

      contexts 5, 6, 6; block size 4         slots [3 rows, L = 6]       mask (added to scores)
      tables [[7, 2], [1, 9], [4, 0]]  ->    [[28 29 30 31  8 28]        0 0 0 0 0 -inf
                                              [ 4  5  6  7 36 37]        0 0 0 0 0 0
                                              [16 17 18 19  0  1]]       0 0 0 0 0 0

- Per layer: the decode rows of q in group order (one ``index_select``), then per group two
  ``index_select`` into buffers the backend keeps (nothing is allocated per layer) and one
  ``scaled_dot_product_attention`` in which each KV head's query heads are its query rows: q
  ``[n, kv_heads, group, D]`` against K, V ``[n, kv_heads, L, D]``, grouped-query attention
  without repeating K and V.
- Where a C compiler is at hand, the decode rows skip all of that: a small C kernel reads their
  context straight from the paged cache (attention/cpu_decode.c, built by cpu_native.py; about
  twice as fast); the torch path above stays, for machines without a compiler and as its check.
- Rows with several query tokens (prefill, chunks) go one sequence at a time as in the reference,
  over their gathered context, with K and V broadcast over each KV head's query heads (stride 0,
  no copy) and a causal mask only where the chunk follows a cached prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nanovllm.attention.cpu_native import decode_kernel
from nanovllm.attention.metadata import AttentionMetadata
from nanovllm.attention.torch_ref import TorchRefBackend, causal_mask

# A decode group's longest context is at most this times its shortest: padding stays under 25%,
# and a batch of contexts from 20 to 400 tokens makes about a dozen groups.
GROUP_RATIO = 1.25
# ... and its gathered K and V together take at most this: they then stay in a core's L2 cache
# (2 MB on the machine measured) between the gather and the attention that reads them, which
# took 10-15% off a decode layer's attention.
GROUP_BYTES = 1 << 20


@dataclass
class DecodeGroup:
    """``count`` decode rows attended together, padded to their longest context ``length``."""

    count: int
    length: int
    slots: torch.Tensor  # int64 [count * length]: the cache slot of each context position
    mask: torch.Tensor | None  # [count, 1, 1, length], 0 or -inf, added to scores; None: no pad


@dataclass
class PrefillRow:
    """A sequence with several query tokens: ``q[start : start + q_len]`` over its context."""

    start: int
    q_len: int
    slots: torch.Tensor  # int64 [seq_len]
    mask: torch.Tensor | None  # bool [q_len, seq_len] bottom-right causal; None: is_causal


@dataclass
class StepPlan:
    decode_rows: torch.Tensor  # int64 [m]: the decode rows of q, shortest context first
    decode_tables: torch.Tensor  # int32 [m, width]: their block tables (the native kernel's)
    decode_lens: torch.Tensor  # int32 [m]: their context lengths
    decode: list[DecodeGroup]  # the torch path's groups, in that order (empty for the kernel)
    prefill: list[PrefillRow]


def plan_step(
    meta: AttentionMetadata,
    block_size: int,
    position_bytes: int,
    dtype: torch.dtype,
    groups: bool = True,
) -> StepPlan:
    """What every layer of this step does, from the metadata's host-side lengths;
    ``position_bytes``: the K and V of one context position in one layer; ``dtype``: q's;
    ``groups``: plan the torch path's decode groups (not needed by the native kernel)."""
    q_lens = np.asarray(meta.query_lens_host)
    seq_lens = np.asarray(meta.seq_lens_host)
    starts = np.cumsum(q_lens) - q_lens
    tables = meta.block_tables.cpu().numpy()
    decode = np.flatnonzero(q_lens == 1)
    decode = decode[np.argsort(seq_lens[decode], kind="stable")]
    plan = StepPlan(
        torch.from_numpy(starts[decode]),
        torch.from_numpy(np.ascontiguousarray(tables[decode], dtype=np.int32)),
        torch.from_numpy(seq_lens[decode].astype(np.int32)),
        plan_decode(decode, seq_lens, tables, block_size, position_bytes, dtype) if groups else [],
        [],
    )
    for b in np.flatnonzero(q_lens > 1):
        q_len, seq_len = int(q_lens[b]), int(seq_lens[b])
        pos = np.arange(seq_len)
        slots = tables[b, pos // block_size].astype(np.int64) * block_size + pos % block_size
        mask = None if q_len == seq_len else causal_mask(q_len, seq_len, "cpu")
        plan.prefill.append(PrefillRow(int(starts[b]), q_len, torch.from_numpy(slots), mask))
    return plan


def plan_decode(
    seqs: np.ndarray,
    seq_lens: np.ndarray,
    tables: np.ndarray,
    block_size: int,
    position_bytes: int,
    dtype: torch.dtype,
) -> list[DecodeGroup]:
    """The decode groups of sequences ``seqs`` (sorted by context length), their slots computed
    for all groups at once: row i of a group of longest context L has positions 0..L-1."""
    if not len(seqs):
        return []
    lens = seq_lens[seqs]
    bounds = group_bounds(lens.tolist(), position_bytes)
    widths = np.repeat(lens[bounds[1:] - 1], np.diff(bounds))  # each row padded to its group's L
    row_starts = np.cumsum(widths) - widths
    row = np.repeat(np.arange(len(seqs)), widths)
    pos = np.arange(int(widths.sum())) - row_starts[row]
    real = pos < lens[row]
    pos[~real] = 0  # padding reads position 0: a written slot, masked out
    blocks = tables[seqs][row, pos // block_size].astype(np.int64)
    slots = torch.from_numpy(blocks * block_size + pos % block_size)
    # additive, in q's dtype: SDPA would convert a boolean mask on every call
    masks = torch.zeros(len(real), dtype=dtype).masked_fill_(torch.from_numpy(~real), -torch.inf)
    groups = []
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        n, length = b - a, int(lens[b - 1])
        span = slice(int(row_starts[a]), int(row_starts[a]) + n * length)
        mask = None if lens[a] == length else masks[span].view(n, 1, 1, length)
        groups.append(DecodeGroup(n, length, slots[span], mask))
    return groups


def group_bounds(lens: list[int], position_bytes: int) -> np.ndarray:
    """Where ascending context lengths ``lens`` are cut into groups: a group's longest is at most
    ``GROUP_RATIO`` times its shortest, and its gathered K and V fit in ``GROUP_BYTES`` (or it
    has one row). Returns [0, cut, ..., len(lens)]."""
    bounds = [0]
    for i, n in enumerate(lens):
        first, count = lens[bounds[-1]], i - bounds[-1] + 1
        if count > 1 and (n > first * GROUP_RATIO or count * n * position_bytes > GROUP_BYTES):
            bounds.append(i)
    bounds.append(len(lens))
    return np.asarray(bounds)


class CpuSdpaBackend(TorchRefBackend):
    """The reference's ``store_kv``; its own ``attend``. ``native``: decode rows through the C
    kernel (cpu_native.py) when it builds here; False: always torch ops."""

    name = "cpu_sdpa"

    def __init__(self, native: bool = True):
        self.native = native
        self._buffers: list[torch.Tensor | None] = [None, None]  # gathered K, V; reused

    def attend(self, q, k_cache, v_cache, meta: AttentionMetadata, scale: float) -> torch.Tensor:
        kv_heads, dim = k_cache.shape[2:]
        group, block_size = q.size(1) // kv_heads, k_cache.size(1)
        kernel = self.native and decode_kernel(q.dtype, group, dim, block_size)
        if meta.plan is None:  # the step's first layer; the others reuse it
            position_bytes = 2 * kv_heads * dim * k_cache.element_size()
            meta.plan = plan_step(meta, block_size, position_bytes, q.dtype, groups=not kernel)
        plan, out = meta.plan, torch.empty_like(q)
        if kernel and len(plan.decode_rows):
            tables, lens, rows = plan.decode_tables, plan.decode_lens, plan.decode_rows
            kernel(q.contiguous(), k_cache, v_cache, tables, lens, rows, scale, out)
        elif plan.decode:
            self._decode_groups(q, k_cache, v_cache, plan, scale, out)
        k_rows, v_rows = k_cache.view(-1, kv_heads * dim), v_cache.view(-1, kv_heads * dim)
        for p in plan.prefill:
            k = k_rows.index_select(0, p.slots).view(-1, kv_heads, dim)
            v = v_rows.index_select(0, p.slots).view(-1, kv_heads, dim)
            qs = q[p.start : p.start + p.q_len]
            out[p.start : p.start + p.q_len] = _attend_chunk(qs, k, v, p.mask, group, scale)
        return out

    def _decode_groups(self, q, k_cache, v_cache, plan: StepPlan, scale: float, out) -> None:
        """The decode rows on torch ops: per group two gathers and one SDPA."""
        kv_heads, dim = k_cache.shape[2:]
        k_rows, v_rows = k_cache.view(-1, kv_heads * dim), v_cache.view(-1, kv_heads * dim)
        q_dec = q.index_select(0, plan.decode_rows)  # group after group
        o_dec = torch.empty_like(q_dec)
        first = 0
        for g in plan.decode:
            n, rows = g.count, slice(first, first + g.count)
            k = self._gather(0, k_rows, g.slots).view(n, g.length, kv_heads, dim)
            v = self._gather(1, v_rows, g.slots).view(n, g.length, kv_heads, dim)
            o_dec[rows] = F.scaled_dot_product_attention(
                q_dec[rows].view(n, kv_heads, -1, dim),  # each KV head's query heads as rows
                k.transpose(1, 2),
                v.transpose(1, 2),
                attn_mask=g.mask,
                scale=scale,
            ).view(n, -1, dim)
            first += n
        out.index_copy_(0, plan.decode_rows, o_dec)

    def _gather(self, i: int, rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``rows[index]`` written into buffer ``i``, grown (doubling) when too small."""
        need = len(index) * rows.size(1)
        buf = self._buffers[i]
        if buf is None or buf.numel() < need or buf.dtype != rows.dtype:
            size = max(need, 2 * buf.numel() if buf is not None else 0)
            buf = self._buffers[i] = torch.empty(size, dtype=rows.dtype, device=rows.device)
        return torch.index_select(rows, 0, index, out=buf[:need].view(-1, rows.size(1)))


def _attend_chunk(q, k, v, mask, group: int, scale: float) -> torch.Tensor:
    """q [q_len, heads, D] over k, v [seq_len, kv_heads, D]: each KV head is broadcast (stride 0)
    over its ``group`` query heads; ``mask`` None means top-left causal (q_len == seq_len)."""
    q_len, heads, dim = q.shape
    kv_heads, seq_len = k.size(1), k.size(0)
    qh = q.view(q_len, kv_heads, group, dim).permute(1, 2, 0, 3)  # [kv_heads, group, q_len, D]
    kh = k.permute(1, 0, 2)[:, None].expand(kv_heads, group, seq_len, dim)
    vh = v.permute(1, 0, 2)[:, None].expand(kv_heads, group, seq_len, dim)
    o = F.scaled_dot_product_attention(
        qh, kh, vh, attn_mask=mask, is_causal=mask is None, scale=scale
    )
    return o.permute(2, 0, 1, 3).reshape(q_len, heads, dim)
