"""The fused-KV-store section of benchmarks/gpu_kernels_check.py: attention's prologue writing K/V
to the paged cache (``elementwise_kernels.qk_norm_rope_store_kv``) against the two launches it
replaces (``qk_norm_rope``, then ``attention/triton_kernels.py:store_kvcache``).

At Qwen3-0.6B's shapes (16 q heads, 8 kv heads, head_dim 128, q/k RMSNorm, bf16; per rank at
TP=2 too), for TOKENS tokens, block sizes 16 and 256, every 5th token's slot -1 (skipped):
- checks: q equal bit for bit to ``qk_norm_rope``'s; both caches equal bit for bit to what
  ``qk_norm_rope`` + ``store_kvcache`` leave (cells of skipped and unnamed slots untouched);
  and once captured in a CUDA graph on static buffers, a replay with new qkv / positions / slots
  writes what eager does (sizes are launch arguments; nothing syncs the host);
- timing: both paths as a CUDA graph of LAYERS layers in turn (what a decode step runs, each
  layer its own qkv and cache), per layer; the row's "old" is the two launches.
"""

from __future__ import annotations

import torch
from _kcheck import DEVICE, DRY, Report, graph_time

from nanovllm.attention.triton_kernels import store_kvcache
from nanovllm.layers import elementwise_kernels as ek
from nanovllm.layers.rotary import RotaryEmbedding

HEADS, KV_HEADS, HEAD_DIM = (4, 2, 32) if DRY else (16, 8, 128)
TOKENS = (1, 7) if DRY else (1, 16, 256)  # batch-1 and batch-16 decode; a bench-sized batch
BLOCK_SIZES = (16, 32) if DRY else (16, 256)
LAYERS = 2 if DRY else 28
DTYPE = torch.float32 if DRY else torch.bfloat16  # the interpreter's bf16 casts truncate
MAX_POS = 4096


class Layer:
    """One layer's inputs of the prologue and its paged caches (slots beyond the tokens' unused)."""

    def __init__(self, tokens: int, block_size: int, heads: int, kv_heads: int, gen):
        self.heads, self.kv_heads = heads, kv_heads
        width = (heads + 2 * kv_heads) * HEAD_DIM
        self.qkv = torch.randn(tokens, width, generator=gen, device=DEVICE).to(DTYPE)
        self.positions = torch.randint(0, MAX_POS, (tokens,), generator=gen, device=DEVICE)
        self.q_w = (1 + 0.1 * torch.randn(HEAD_DIM, generator=gen, device=DEVICE)).to(DTYPE)
        self.k_w = (1 + 0.1 * torch.randn(HEAD_DIM, generator=gen, device=DEVICE)).to(DTYPE)
        num_blocks = 2 + 2 * tokens // block_size
        shape = (num_blocks, block_size, kv_heads, HEAD_DIM)
        self.k_cache = torch.randn(shape, generator=gen, device=DEVICE).to(DTYPE)
        self.v_cache = torch.randn(shape, generator=gen, device=DEVICE).to(DTYPE)
        perm = torch.randperm(num_blocks * block_size, generator=gen, device=DEVICE)
        self.slots = perm[:tokens].clone()
        self.slots[4::5] = -1  # a skipped token (CUDA-graph padding)

    def args(self, rotary: RotaryEmbedding) -> tuple:
        return (
            self.qkv, self.positions, self.q_w, self.k_w, 1e-6, rotary.cos, rotary.sin,
            self.heads, self.kv_heads, HEAD_DIM,
        )  # fmt: skip

    def unfused(self, rotary, k_cache=None, v_cache=None):
        q, k, v = ek.qk_norm_rope(*self.args(rotary))
        k_cache = self.k_cache if k_cache is None else k_cache
        store_kvcache(k, v, k_cache, self.v_cache if v_cache is None else v_cache, self.slots)
        return q

    def fused(self, rotary, k_cache=None, v_cache=None):
        k_cache = self.k_cache if k_cache is None else k_cache
        v_cache = self.v_cache if v_cache is None else v_cache
        return ek.qk_norm_rope_store_kv(*self.args(rotary), k_cache, v_cache, self.slots)


def _same(report: Report, case: str, layer: Layer, rotary: RotaryEmbedding) -> bool:
    """Fused vs unfused from the same starting caches: q and both caches equal to the bit."""
    want_k, want_v = layer.k_cache.clone(), layer.v_cache.clone()
    got_k, got_v = layer.k_cache.clone(), layer.v_cache.clone()
    want_q = layer.unfused(rotary, want_k, want_v)
    got_q = layer.fused(rotary, got_k, got_v)
    diff = {
        "q": int((got_q != want_q).sum()),
        "k_cache": int((got_k != want_k).sum()),
        "v_cache": int((got_v != want_v).sum()),
    }
    written = int((layer.slots >= 0).sum())
    detail = f"differing elements {diff}; {written}/{len(layer.slots)} tokens stored"
    return report.check("kvstore", f"{case}: q, caches bit-equal", not any(diff.values()), detail)


def check_graph_replay(report: Report, rotary: RotaryEmbedding, gen) -> None:
    """Captured once, replayed on new contents of the same buffers: the cache gets the new slots."""
    layer = Layer(TOKENS[-1], BLOCK_SIZES[-1], HEADS, KV_HEADS, gen)
    layer.fused(rotary)  # compiled outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        q = layer.fused(rotary)
    fresh = Layer(TOKENS[-1], BLOCK_SIZES[-1], HEADS, KV_HEADS, gen)
    for name in ("qkv", "positions", "q_w", "k_w", "slots", "k_cache", "v_cache"):
        getattr(layer, name).copy_(getattr(fresh, name))
    graph.replay()
    want_q = fresh.unfused(rotary)  # fresh's own caches, the same starting contents
    torch.cuda.synchronize()
    ok = torch.equal(q, want_q) and torch.equal(layer.k_cache, fresh.k_cache)
    ok = ok and torch.equal(layer.v_cache, fresh.v_cache)
    report.check("kvstore", "CUDA graph replay on new slots == eager", ok, f"{TOKENS[-1]} tokens")


def time_paths(report: Report, rotary: RotaryEmbedding, gen) -> dict:
    out = {}
    for tokens in TOKENS:
        layers = [Layer(tokens, BLOCK_SIZES[-1], HEADS, KV_HEADS, gen) for _ in range(LAYERS)]
        old = graph_time(lambda ls=layers: [layer.unfused(rotary) for layer in ls]) / LAYERS
        new = graph_time(lambda ls=layers: [layer.fused(rotary) for layer in ls]) / LAYERS
        out[tokens] = dict(unfused_us=old * 1e6, fused_us=new * 1e6)
        print(
            f"  {tokens:4d} tokens: qk_norm_rope + store_kvcache {old * 1e6:6.2f} us/layer, "
            f"fused {new * 1e6:6.2f} us/layer ({(old - new) * 1e6 * LAYERS:+.1f} us per "
            f"{LAYERS}-layer step saved)",
            flush=True,
        )
        report.row("kv store", f"prologue+store, {tokens} tok", old * 1e6, new * 1e6, "per layer")
    return out


def run(report: Report) -> dict:
    print(f"== fused KV store: {HEADS}/{KV_HEADS} heads, head_dim {HEAD_DIM}, {DTYPE}", flush=True)
    gen = torch.Generator(device=DEVICE).manual_seed(7)
    rotary = RotaryEmbedding(HEAD_DIM, MAX_POS, 1e6).to(DEVICE)
    for heads, kv_heads in ((HEADS, KV_HEADS), (HEADS // 2, KV_HEADS // 2)):  # TP=1, a TP=2 rank
        for block_size in BLOCK_SIZES:
            for tokens in TOKENS:
                layer = Layer(tokens, block_size, heads, kv_heads, gen)
                case = f"{heads}/{kv_heads} heads, block {block_size}, {tokens} tok"
                _same(report, case, layer, rotary)
    if not DRY:
        check_graph_replay(report, rotary, gen)
    return dict(timing=time_paths(report, rotary, gen))
