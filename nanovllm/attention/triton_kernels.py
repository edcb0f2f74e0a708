"""Triton kernels for the paged KV cache: the KV store and paged attention (prefill + decode).

Contract (the `triton` backend and the tests depend on it exactly):

* Per layer, `k_cache` and `v_cache` are `[num_blocks, block_size, num_kv_heads, head_dim]`,
  contiguous, in the model dtype. A token's slot is `block_id * block_size + offset_in_block`;
  sequence b's i-th token lives in page `block_tables[b, i // block_size]`::

      block_tables[b] = [7, 2, 9, 0, 0]      seq_len = 37, block_size = 16
                         |  |  |  `--`------ beyond the sequence: never read
                         v  v  v
      k_cache[7] = tokens  0..15   [block_size, num_kv_heads, head_dim]
      k_cache[2] = tokens 16..31
      k_cache[9] = tokens 32..36 + 11 unused slots (masked, never used)

* `store_kvcache` writes token n's K/V to slot `slot_mapping[n]`; a negative slot skips the token
  (CUDA-graph padding). With the Triton elementwise kernels, attention's prologue writes the same
  slots itself (`layers/elementwise_kernels.py:qk_norm_rope_store_kv`, `Config.fused_kv_store`)
  and the model skips this store: the layout above is shared by both.
* `paged_attention` takes the query tokens of B sequences concatenated (`cu_seqlens_q`), whose
  K/V are already stored, and applies a bottom-right-aligned causal mask: query row i of a
  sequence with q_len rows and seq_len keys sees keys `j <= seq_len - q_len + i`. Whole prompts,
  prefill chunks after a cached prefix and decodes (q_len == 1) mix freely in one launch.
  Rows of `out` past `cu_seqlens_q[B]` are left untouched.
* Every launch decision depends only on tensor shapes, `max_seqlen_q` and `num_splits`, never on
  tensor contents, so decode launches can be captured in a CUDA graph.

How the work is cut: one program owns (sequence, tile of BLOCK_Q query tokens, kv head, split).
Its tile folds the query tokens and the GQA group's query heads into the rows of one matrix
(row r = token r // GROUP_PAD, head r % GROUP_PAD, padded to >= 16 rows for `tl.dot`), so every
K/V page is read once per kv head. With `num_splits > 1` (flash-decoding) each split covers a
slice of the key range, writes a normalized partial output plus its log-sum-exp to fp32 scratch,
and `_merge_splits_kernel` combines them.
"""

from __future__ import annotations

import functools
import math

import torch
import triton
import triton.language as tl

_DEFAULT_SM_COUNT = 132  # H100 SXM; used when no GPU is visible (interpreter tests)
_WAVES_PER_SM = 4  # programs per SM the split heuristic aims for
_MAX_SPLITS = 16
_MIN_KEYS_PER_SPLIT = 256  # below this the merge costs more than the parallelism gains
_SPLIT_MAX_Q = 16  # longer query tiles bring enough work per program: never split them


# ------------------------------------------------------------------------------------ KV store


@triton.jit
def _store_kvcache_kernel(
    K, V, KCache, VCache, slot_mapping,
    stride_kn, stride_kh, stride_kd, stride_vn, stride_vh, stride_vd,
    stride_cs, stride_ch, stride_cd,
    NUM_KV_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr,
    KVH_PAD: tl.constexpr, HEAD_DIM_PAD: tl.constexpr,
):  # fmt: skip
    token = tl.program_id(0).to(tl.int64)  # token * stride can pass 2**31 on long prefills
    slot = tl.load(slot_mapping + token)
    if slot < 0:  # padding token of a CUDA-graph batch
        return
    offs_h = tl.arange(0, KVH_PAD)[:, None]
    offs_d = tl.arange(0, HEAD_DIM_PAD)[None, :]
    mask = (offs_h < NUM_KV_HEADS) & (offs_d < HEAD_DIM)
    k = tl.load(K + token * stride_kn + offs_h * stride_kh + offs_d * stride_kd, mask=mask)
    v = tl.load(V + token * stride_vn + offs_h * stride_vh + offs_d * stride_vd, mask=mask)
    dst = slot.to(tl.int64) * stride_cs + offs_h * stride_ch + offs_d * stride_cd
    tl.store(KCache + dst, k, mask=mask)
    tl.store(VCache + dst, v, mask=mask)


def store_kvcache(
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """Write k/v `[N, num_kv_heads, head_dim]` (any strides) into the paged caches in place."""
    n_tokens, num_kv_heads, head_dim = k.shape
    assert v.shape == k.shape, f"k {tuple(k.shape)} and v {tuple(v.shape)} differ"
    assert k_cache.shape[2:] == (num_kv_heads, head_dim), (
        f"cache {tuple(k_cache.shape)} does not hold [*, *, {num_kv_heads}, {head_dim}] tokens"
    )
    assert v_cache.shape == k_cache.shape, f"k {k_cache.shape} != v {v_cache.shape}"
    assert k_cache.is_contiguous() and v_cache.is_contiguous(), "KV caches must be contiguous"
    assert slot_mapping.shape == (n_tokens,), f"slot_mapping {tuple(slot_mapping.shape)}"
    if n_tokens == 0:
        return
    # A contiguous cache seen as [num_slots, num_kv_heads, head_dim]: stride(1) steps one slot.
    _store_kvcache_kernel[(n_tokens,)](
        k, v, k_cache, v_cache, slot_mapping,
        *k.stride(), *v.stride(), *k_cache.stride()[1:],
        NUM_KV_HEADS=num_kv_heads, HEAD_DIM=head_dim,
        KVH_PAD=triton.next_power_of_2(num_kv_heads),
        HEAD_DIM_PAD=triton.next_power_of_2(head_dim),
    )  # fmt: skip


# ------------------------------------------------------------------------------ paged attention


@triton.jit
def _attend_key_range(
    q, K, V, bt_row, key_lo, key_hi, causal_hi, qk_scale,
    stride_kb, stride_ks, stride_kd, offs_d, d_mask,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_SIZE: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr, DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    """Online softmax of a tile's rows over keys [key_lo, key_hi); row r sees keys <= causal_hi[r].

    Returns (acc, m, l) with scores in the log2 domain. A row that saw no key keeps m = -inf and
    l = 0; `m_safe` keeps exp2(-inf - -inf) = NaN out of such rows.
    """
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM_PAD], tl.float32)
    offs_n = tl.arange(0, BLOCK_N)
    for start in range(key_lo, key_hi, BLOCK_N):
        # BLOCK_SIZE % BLOCK_N == 0 and start % BLOCK_N == 0: the tile lies inside one page.
        page = tl.load(bt_row + start // BLOCK_SIZE).to(tl.int64)
        keys = start + offs_n
        in_range = keys < key_hi  # slots past the sequence end may hold NaN garbage
        kv_off = page * stride_kb + (start % BLOCK_SIZE + offs_n) * stride_ks
        k = tl.load(K + kv_off[None, :] + offs_d[:, None] * stride_kd,
                    mask=in_range[None, :] & d_mask[:, None], other=0.0)  # fmt: skip
        qk = tl.dot(q, k, input_precision=DOT_PRECISION) * qk_scale
        visible = (keys[None, :] <= causal_hi[:, None]) & in_range[None, :]
        qk = tl.where(visible, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.math.exp2(qk - m_safe[:, None])
        alpha = tl.math.exp2(m_i - m_safe)
        v = tl.load(V + kv_off[:, None] + offs_d[None, :] * stride_kd,
                    mask=in_range[:, None] & d_mask[None, :], other=0.0)  # fmt: skip
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        l_i = l_i * alpha + tl.sum(p, 1)
        m_i = m_new
    return acc, m_i, l_i


# Integer arguments that vary from step to step or bucket to bucket: without this Triton would
# compile a new variant whenever one of them changes value 1 or divisibility by 16 (a stall of a
# second in the middle of a run, and one more compile per split count at graph capture).
@triton.jit(do_not_specialize=["stride_bt", "num_q_tiles", "num_splits"])
def _paged_attention_kernel(
    Q, K, V, Out, PartOut, PartLse, cu_seqlens_q, seq_lens, block_tables, qk_scale,
    stride_qt, stride_qh, stride_qd, stride_kb, stride_ks, stride_kh, stride_kd,
    stride_ot, stride_oh, stride_od, stride_bt, stride_ps, stride_pt, stride_ph, stride_ls,
    stride_lt, num_q_tiles, num_splits,
    GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_SIZE: tl.constexpr, HEAD_DIM: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr, DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    seq, q_tile = tl.program_id(0) // num_q_tiles, tl.program_id(0) % num_q_tiles
    kv_head, split = tl.program_id(1), tl.program_id(2)
    q_start = tl.load(cu_seqlens_q + seq)
    q_len = tl.load(cu_seqlens_q + seq + 1) - q_start
    q0 = q_tile * BLOCK_Q
    if q0 >= q_len:  # the grid is sized for max_seqlen_q; shorter sequences idle here
        return
    seq_len = tl.load(seq_lens + seq)

    rows = tl.arange(0, BLOCK_M)
    tok, head = q0 + rows // GROUP_PAD, rows % GROUP_PAD
    row_ok = (rows < BLOCK_Q * GROUP_PAD) & (head < GROUP) & (tok < q_len)
    head = kv_head * GROUP + head
    offs_d = tl.arange(0, HEAD_DIM_PAD)
    d_mask = offs_d < HEAD_DIM
    q_rows = (q_start + tok).to(tl.int64)
    q_ptr = Q + q_rows[:, None] * stride_qt + head[:, None] * stride_qh
    q_mask = row_ok[:, None] & d_mask[None, :]  # zeros, not garbage: padded columns meet tl.dot
    q = tl.load(q_ptr + offs_d[None, :] * stride_qd, mask=q_mask, other=0.0)

    # Bottom-right causal: row `tok` sees keys <= seq_len - q_len + tok; padded rows see none.
    causal_hi = tl.where(row_ok, seq_len - q_len + tok, -1)
    tile_hi = tl.maximum(seq_len - q_len + tl.minimum(q0 + BLOCK_Q, q_len), 0)
    # This split's slice of the key range, a multiple of BLOCK_N long; it may well be empty.
    per_split = tl.cdiv(tl.cdiv(tile_hi, num_splits), BLOCK_N) * BLOCK_N
    key_lo = split * per_split
    key_hi = tl.minimum(key_lo + per_split, tile_hi)
    acc, m_i, l_i = _attend_key_range(
        q, K + kv_head * stride_kh, V + kv_head * stride_kh, block_tables + seq * stride_bt,
        key_lo, key_hi, causal_hi, qk_scale, stride_kb, stride_ks, stride_kd, offs_d, d_mask,
        BLOCK_M, BLOCK_N, BLOCK_SIZE, HEAD_DIM_PAD, DOT_PRECISION,
    )  # fmt: skip

    _store_tile(
        acc, m_i, l_i, Out, PartOut, PartLse, q_rows, head, split, row_ok, offs_d, d_mask,
        stride_ot, stride_oh, stride_od, stride_ps, stride_pt, stride_ph, stride_ls, stride_lt,
        num_splits,
    )  # fmt: skip


@triton.jit
def _store_tile(
    acc, m_i, l_i, Out, PartOut, PartLse, q_rows, head, split, row_ok, offs_d, d_mask,
    stride_ot, stride_oh, stride_od, stride_ps, stride_pt, stride_ph, stride_ls, stride_lt,
    num_splits,
):  # fmt: skip
    """One split: the normalized tile is the answer. Several: an fp32 partial plus its lse
    (log2 domain), -inf for rows whose slice of keys was empty."""
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    o = acc / l_safe[:, None]
    o_mask = row_ok[:, None] & d_mask[None, :]
    if num_splits == 1:
        o_ptr = Out + q_rows[:, None] * stride_ot + head[:, None] * stride_oh
        tl.store(o_ptr + offs_d[None, :] * stride_od, o.to(Out.dtype.element_ty), mask=o_mask)
    else:
        p_row = split * stride_ps + q_rows * stride_pt + head * stride_ph
        tl.store(PartOut + p_row[:, None] + offs_d[None, :], o, mask=o_mask)
        lse = tl.where(l_i == 0.0, float("-inf"), m_i + tl.math.log2(l_safe))
        tl.store(PartLse + split * stride_ls + q_rows * stride_lt + head, lse, mask=row_ok)


@triton.jit(do_not_specialize=["num_seqs", "num_splits"])  # one variant for every bucket
def _merge_splits_kernel(
    Out, PartOut, PartLse, cu_seqlens_q, num_seqs,
    stride_ot, stride_oh, stride_od, stride_ps, stride_pt, stride_ph, stride_ls, stride_lt,
    num_splits, SPLITS_PAD: tl.constexpr, HEAD_DIM: tl.constexpr, HEAD_DIM_PAD: tl.constexpr,
):  # fmt: skip
    """out = sum_s 2^(lse_s - M) o_s / sum_s 2^(lse_s - M); empty splits have lse_s = -inf."""
    row, head = tl.program_id(0).to(tl.int64), tl.program_id(1)
    if row >= tl.load(cu_seqlens_q + num_seqs):  # padding rows: scratch was never written
        return
    splits = tl.arange(0, SPLITS_PAD)
    offs_d = tl.arange(0, HEAD_DIM_PAD)
    lse = tl.load(PartLse + splits * stride_ls + row * stride_lt + head,
                  mask=splits < num_splits, other=float("-inf"))  # fmt: skip
    m = tl.max(lse, 0)
    w = tl.math.exp2(lse - tl.where(m == float("-inf"), 0.0, m))
    o_mask = (splits[:, None] < num_splits) & (offs_d[None, :] < HEAD_DIM)
    o = tl.load(PartOut + splits[:, None] * stride_ps + row * stride_pt + head * stride_ph
                + offs_d[None, :], mask=o_mask, other=0.0)  # fmt: skip
    denom = tl.sum(w, 0)
    o = tl.sum(o * w[:, None], 0) / tl.where(denom == 0.0, 1.0, denom)
    o_ptr = Out + row * stride_ot + head * stride_oh + offs_d * stride_od
    tl.store(o_ptr, o.to(Out.dtype.element_ty), mask=offs_d < HEAD_DIM)


# ------------------------------------------------------------------------------------ launchers


@functools.cache
def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return _DEFAULT_SM_COUNT
    return torch.cuda.get_device_properties(device).multi_processor_count


def default_num_splits(
    num_programs: int, max_context: int, max_seqlen_q: int, sm_count: int = _DEFAULT_SM_COUNT
) -> int:
    """How many key-range splits to use, from shapes only (CUDA-graph safe).

    Split only short-query launches whose (sequence, q tile, kv head) programs cannot fill
    `sm_count * _WAVES_PER_SM` slots, and never into slices shorter than _MIN_KEYS_PER_SPLIT of
    the longest context the block table can describe.
    """
    target = sm_count * _WAVES_PER_SM
    if max_seqlen_q > _SPLIT_MAX_Q or num_programs >= target:
        return 1
    by_occupancy = triton.cdiv(target, max(num_programs, 1))
    by_length = triton.cdiv(max_context, _MIN_KEYS_PER_SPLIT)
    return max(1, min(by_occupancy, by_length, _MAX_SPLITS))


def _tile_config(
    max_seqlen_q: int, group: int, block_size: int, head_dim: int, elt_bytes: int
) -> dict:
    """Tile sizes and launch settings. Decode gets BLOCK_Q = 1 (rows = the GQA group, padded
    to 16 for tl.dot); prefill packs ~64 rows of (token, head) pairs per tile.

    Warps and stages come from an H100 sweep at Qwen3-0.6B shapes (benchmarks/kernels_bench.py):
    decode is memory-bound and short key tiles (block_size 16/32) want few warps and many loads
    in flight. The software pipeline keeps (stages - 1) K+V tiles in shared memory: capped at
    64 KB so GPUs with ~100 KB per block (consumer cards) still launch.
    """
    group_pad = triton.next_power_of_2(group)
    head_dim_pad = max(16, triton.next_power_of_2(head_dim))  # tl.dot needs K >= 16
    block_q = min(triton.next_power_of_2(max_seqlen_q), max(1, 64 // group_pad))
    block_m = max(16, block_q * group_pad)
    block_n = min(block_size, 64 if head_dim_pad <= 128 else 32)
    decode_like = block_m <= 16
    stages_fit = 1 + (64 * 1024) // (2 * block_n * head_dim_pad * elt_bytes)
    num_stages = max(2, min(5 if decode_like else 3, stages_fit))
    num_warps = 2 if decode_like and block_n < 64 else 4 if block_m <= 64 else 8
    return {
        "GROUP": group, "GROUP_PAD": group_pad, "BLOCK_Q": block_q, "BLOCK_M": block_m,
        "BLOCK_N": block_n, "BLOCK_SIZE": block_size, "HEAD_DIM": head_dim,
        "HEAD_DIM_PAD": head_dim_pad, "num_warps": num_warps, "num_stages": num_stages,
    }  # fmt: skip


def _check_attention_inputs(q, k_cache, v_cache, cu_seqlens_q, seq_lens, block_tables) -> None:
    num_heads, head_dim = q.shape[1:]
    num_kv_heads = k_cache.shape[2]
    block_size = k_cache.shape[1]
    assert k_cache.shape == v_cache.shape, f"k {k_cache.shape} != v {v_cache.shape}"
    assert k_cache.is_contiguous() and v_cache.is_contiguous(), "KV caches must be contiguous"
    assert k_cache.shape[3] == head_dim, f"cache head_dim {k_cache.shape[3]} != q's {head_dim}"
    assert num_heads % num_kv_heads == 0, f"{num_heads} heads vs {num_kv_heads} kv heads"
    assert block_size >= 16 and block_size & (block_size - 1) == 0, f"block_size={block_size}"
    num_seqs = seq_lens.shape[0]
    assert cu_seqlens_q.shape == (num_seqs + 1,), f"cu_seqlens_q {tuple(cu_seqlens_q.shape)}"
    assert block_tables.shape[0] == num_seqs, f"block_tables {tuple(block_tables.shape)}"
    for name, t in (("cu_seqlens_q", cu_seqlens_q), ("seq_lens", seq_lens), ("bt", block_tables)):
        assert t.dtype == torch.int32, f"{name} must be int32, got {t.dtype}"


def paged_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seq_lens: torch.Tensor,
    block_tables: torch.Tensor,
    *,
    max_seqlen_q: int,
    scale: float,
    num_splits: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal (bottom-right aligned) attention of q `[N, num_heads, head_dim]` over the paged cache.

    `max_seqlen_q` must be >= every sequence's query length (rows beyond it are not computed).
    """
    _check_attention_inputs(q, k_cache, v_cache, cu_seqlens_q, seq_lens, block_tables)
    n_tokens, num_heads, head_dim = q.shape
    num_seqs, (block_size, num_kv_heads) = seq_lens.shape[0], k_cache.shape[1:3]
    if out is None:
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    assert out.shape == q.shape, f"out {tuple(out.shape)} != q {tuple(q.shape)}"
    if n_tokens == 0 or num_seqs == 0:
        return out
    cfg = _tile_config(
        max(max_seqlen_q, 1), num_heads // num_kv_heads, block_size, head_dim, q.element_size()
    )
    num_q_tiles = triton.cdiv(max(max_seqlen_q, 1), cfg["BLOCK_Q"])
    if num_splits is None:
        num_splits = default_num_splits(
            num_seqs * num_q_tiles * num_kv_heads, block_tables.shape[1] * block_size,
            max_seqlen_q, _sm_count(q.device),
        )  # fmt: skip
    assert num_splits >= 1, f"num_splits={num_splits}"
    if num_splits > 1:  # fp32 scratch: normalized partial outputs and their log2-sum-exp
        part_out = q.new_empty((num_splits, n_tokens, num_heads, head_dim), dtype=torch.float32)
        part_lse = q.new_empty((num_splits, n_tokens, num_heads), dtype=torch.float32)
    else:  # unused by the kernel (one split writes `out` directly)
        part_out = part_lse = q.new_empty((1, 1, 1, 1), dtype=torch.float32)
    part_strides = (*part_out.stride()[:3], *part_lse.stride()[:2])
    _paged_attention_kernel[(num_seqs * num_q_tiles, num_kv_heads, num_splits)](
        q, k_cache, v_cache, out, part_out, part_lse, cu_seqlens_q, seq_lens, block_tables,
        scale * math.log2(math.e), *q.stride(), *k_cache.stride(), *out.stride(),
        block_tables.stride(0), *part_strides, num_q_tiles, num_splits,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        **cfg,
    )  # fmt: skip
    if num_splits > 1:
        _merge_splits_kernel[(n_tokens, num_heads)](
            out, part_out, part_lse, cu_seqlens_q, num_seqs, *out.stride(), *part_strides,
            num_splits, SPLITS_PAD=max(_MAX_SPLITS, triton.next_power_of_2(num_splits)),
            HEAD_DIM=head_dim, HEAD_DIM_PAD=cfg["HEAD_DIM_PAD"],
        )  # fmt: skip
    return out
