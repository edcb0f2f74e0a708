"""Triton KV-store and paged-attention kernels vs a float64 pure-torch reference.

Runs on CPU under TRITON_INTERPRET=1 (set here when no GPU is visible) on tiny shapes. Every cache
slot the kernels must not read holds NaN, and every `out` starts poisoned, so a stray read or an
unwritten row fails the comparison.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede the first `import triton`
pytest.importorskip("triton")

from nanovllm.attention import triton_kernels as tk

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def reference_attention(q, k_cache, v_cache, cu_seqlens_q, seq_lens, block_tables, scale):
    """Gather each sequence's pages, float64 softmax with a bottom-right-aligned causal mask."""
    out = torch.zeros(q.shape, dtype=torch.float64)
    block_size, num_kv_heads = k_cache.shape[1:3]
    group = q.shape[1] // num_kv_heads
    for b, seq_len in enumerate(seq_lens.tolist()):
        lo, hi = cu_seqlens_q[b].item(), cu_seqlens_q[b + 1].item()
        pages = block_tables[b, : math.ceil(seq_len / block_size)].long()
        k = k_cache[pages].flatten(0, 1)[:seq_len].double().repeat_interleave(group, dim=1)
        v = v_cache[pages].flatten(0, 1)[:seq_len].double().repeat_interleave(group, dim=1)
        scores = torch.einsum("qhd,khd->hqk", q[lo:hi].double(), k) * scale
        rows = torch.arange(hi - lo)[:, None]
        visible = torch.arange(seq_len)[None, :] <= seq_len - (hi - lo) + rows
        probs = scores.masked_fill(~visible, float("-inf")).softmax(-1)
        out[lo:hi] = torch.einsum("hqk,khd->qhd", probs, v)
    return out


def make_batch(q_lens, seq_lens, *, num_heads, num_kv_heads, head_dim, block_size, dtype):
    """Random paged cache: shuffled pages, NaN in every slot no sequence owns (block 0 included,
    which also pads the block tables), q as a non-contiguous view out of a fused qkv tensor."""
    max_blocks = max(math.ceil(s / block_size) for s in seq_lens) + 1
    num_blocks = 1 + sum(math.ceil(s / block_size) for s in seq_lens)
    shape = (num_blocks, block_size, num_kv_heads, head_dim)
    k_cache = torch.full(shape, float("nan"), dtype=dtype)
    v_cache = torch.full(shape, float("nan"), dtype=dtype)
    free = (torch.randperm(num_blocks - 1) + 1).tolist()
    block_tables = torch.zeros(len(seq_lens), max_blocks, dtype=torch.int32)
    for b, seq_len in enumerate(seq_lens):
        for i in range(math.ceil(seq_len / block_size)):
            page, used = free.pop(), min(block_size, seq_len - i * block_size)
            block_tables[b, i] = page
            k_cache[page, :used] = torch.randn(used, num_kv_heads, head_dim).to(dtype)
            v_cache[page, :used] = torch.randn(used, num_kv_heads, head_dim).to(dtype)
    qkv = torch.randn(sum(q_lens), num_heads + 2 * num_kv_heads, head_dim).to(dtype)
    cu = torch.tensor([0, *torch.tensor(q_lens).cumsum(0).tolist()], dtype=torch.int32)
    tensors = (qkv[:, :num_heads], k_cache, v_cache, cu, torch.tensor(seq_lens, dtype=torch.int32),
               block_tables)  # fmt: skip
    return tuple(t.to(DEVICE) for t in tensors)


def check_attention(q_lens, seq_lens, *, num_heads=4, num_kv_heads=2, head_dim=16,
                    block_size=16, num_splits=1, dtype=torch.float32):  # fmt: skip
    batch = make_batch(q_lens, seq_lens, num_heads=num_heads, num_kv_heads=num_kv_heads,
                       head_dim=head_dim, block_size=block_size, dtype=dtype)  # fmt: skip
    scale = head_dim**-0.5
    out = torch.full(batch[0].shape, float("nan"), dtype=dtype, device=DEVICE)
    got = tk.paged_attention(*batch, max_seqlen_q=max(q_lens), scale=scale,
                             num_splits=num_splits, out=out)  # fmt: skip
    assert got is out and got.dtype == dtype
    want = reference_attention(*(t.cpu() for t in batch), scale)
    err = (got.cpu().double() - want).abs().max().item() / want.abs().max().item()
    assert err < TOLERANCE[dtype], f"relative error {err:.2e}"


# ------------------------------------------------------------------------------------ KV store


def test_store_kvcache_skips_negative_slots_and_handles_strided_inputs():
    n, num_kv_heads, head_dim, block_size = 7, 2, 16, 16
    qkv = torch.randn(n, (4 + 2 * num_kv_heads) * head_dim, device=DEVICE)
    k, v = qkv[:, 4 * head_dim :].view(n, 2 * num_kv_heads, head_dim).split(num_kv_heads, dim=1)
    assert not k.is_contiguous()
    slots = torch.tensor([3, -1, 16, 47, -1, 0, 33], dtype=torch.int64, device=DEVICE)
    k_cache = torch.full((3, block_size, num_kv_heads, head_dim), -7.0, device=DEVICE)
    v_cache = k_cache.clone()
    tk.store_kvcache(k, v, k_cache, v_cache, slots)
    want_k, want_v = torch.full_like(k_cache, -7.0), torch.full_like(v_cache, -7.0)
    keep = slots >= 0
    want_k.view(-1, num_kv_heads, head_dim)[slots[keep]] = k[keep]
    want_v.view(-1, num_kv_heads, head_dim)[slots[keep]] = v[keep]
    assert torch.equal(k_cache, want_k) and torch.equal(v_cache, want_v)


# ------------------------------------------------------------------------------ paged attention


@pytest.mark.parametrize("num_splits", [1, 2, 8])
@pytest.mark.parametrize("block_size", [16, 32])
def test_decode_varied_lengths(block_size, num_splits):
    seq_lens = [1, block_size - 1, block_size, 3 * block_size + 5, 2]
    check_attention([1] * len(seq_lens), seq_lens, block_size=block_size, num_splits=num_splits)


@pytest.mark.parametrize("num_heads,num_kv_heads", [(2, 2), (4, 2), (8, 2)])
def test_decode_gqa_ratios(num_heads, num_kv_heads):
    check_attention([1, 1, 1], [5, 40, 70], num_heads=num_heads, num_kv_heads=num_kv_heads,
                    head_dim=32, num_splits=3)  # fmt: skip


@pytest.mark.parametrize("block_size", [16, 32])
def test_whole_prompt_prefill(block_size):
    check_attention([37, 5], [37, 5], block_size=block_size)


@pytest.mark.parametrize("num_splits", [1, 3])
def test_chunked_prefill_after_cached_prefix(num_splits):
    check_attention([20, 3], [52, 19], num_splits=num_splits)


@pytest.mark.parametrize("num_heads,num_kv_heads,block_size,num_splits",
                         [(2, 2, 16, 1), (4, 2, 32, 2), (8, 2, 16, 3)])  # fmt: skip
def test_mixed_batch_in_one_launch(num_heads, num_kv_heads, block_size, num_splits):
    # prefill chunk after a prefix, two decodes, a whole prompt, a decode with a 1-token context
    check_attention([9, 1, 1, 21, 1], [40, 33, 70, 21, 1], num_heads=num_heads,
                    num_kv_heads=num_kv_heads, block_size=block_size,
                    num_splits=num_splits)  # fmt: skip


# The interpreter (triton 3.x) keeps bf16 as raw uint16 bits and multiplies those in tl.dot.
BF16_SKIP = pytest.mark.skipif(INTERPRETED, reason="TRITON_INTERPRET's tl.dot mishandles bf16")


@pytest.mark.parametrize("dtype", [torch.float16, pytest.param(torch.bfloat16, marks=BF16_SKIP)])
def test_half_precision_mixed_batch(dtype):
    check_attention([6, 1, 1], [30, 17, 49], head_dim=32, num_splits=2, dtype=dtype)


def test_non_power_of_two_head_dim():
    check_attention([5, 1], [21, 40], head_dim=24, num_splits=2)


def test_rows_past_the_last_sequence_are_untouched():
    batch = make_batch([1, 1], [9, 30], num_heads=2, num_kv_heads=1, head_dim=16, block_size=16,
                       dtype=torch.float32)  # fmt: skip
    q = torch.cat([batch[0], torch.zeros_like(batch[0])])  # two CUDA-graph padding rows
    out = torch.full(q.shape, 5.0, device=DEVICE)
    tk.paged_attention(q, *batch[1:], max_seqlen_q=1, scale=0.25, num_splits=2, out=out)
    assert torch.isfinite(out[:2]).all() and (out[2:] == 5.0).all()


def test_default_num_splits_is_shape_only_heuristic():
    # batch 256 x 8 kv heads already fills 132 SMs: no split
    assert tk.default_num_splits(256 * 8, 4096, 1, sm_count=132) == 1
    # 4 sequences x 8 kv heads: split, bounded by the cap and by the context length
    assert tk.default_num_splits(32, 32768, 1, sm_count=132) == 16
    assert tk.default_num_splits(32, 512, 1, sm_count=132) == 2
    assert tk.default_num_splits(32, 32768, 512, sm_count=132) == 1  # long query tiles


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_decode_replays_in_a_cuda_graph_with_new_lengths():
    batch = make_batch([1] * 4, [300, 17, 90, 5], num_heads=16, num_kv_heads=8, head_dim=128,
                       block_size=16, dtype=torch.bfloat16)  # fmt: skip
    q, k_cache, v_cache, cu, seq_lens, block_tables = batch
    k_cache.nan_to_num_(0.0), v_cache.nan_to_num_(0.0)  # shorter contexts below expose slots
    out = torch.empty_like(q)

    def step():
        tk.paged_attention(*batch, max_seqlen_q=1, scale=0.1, out=out)

    step()  # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    seq_lens.copy_(torch.tensor([7, 16, 90, 1], dtype=torch.int32))
    graph.replay()
    want = reference_attention(*(t.cpu() for t in batch), 0.1)
    assert (out.cpu().double() - want).abs().max().item() < 1e-2 * want.abs().max().item()
