"""The CPU backend (attention/cpu_sdpa.py) against the reference (torch_ref): the same outputs on
mixed steps, its gather plan checked slot by slot, and the same greedy tokens in the engine."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from nanovllm import LLM, SamplingParams
from nanovllm.attention import AttentionMetadata, cpu_sdpa, get_backend, resolve_backend_name
from nanovllm.attention.cpu_native import decode_kernel
from nanovllm.attention.cpu_sdpa import GROUP_RATIO, CpuSdpaBackend, plan_step
from nanovllm.errors import ConfigError

BS, KV_HEADS, HEADS, DIM = 16, 2, 6, 8


def step_metadata(q_lens: list[int], seq_lens: list[int], seed: int = 0) -> AttentionMetadata:
    """A step over a paged cache of shuffled blocks: each sequence's new tokens are the last
    ``q_len`` of its ``seq_len``."""
    rng = random.Random(seed)
    nblocks = [-(-n // BS) for n in seq_lens]
    free = list(range(1, sum(nblocks) + 8))
    rng.shuffle(free)
    tables = np.zeros((len(seq_lens), max(nblocks)), dtype=np.int32)
    slots = []
    for b, (q, n) in enumerate(zip(q_lens, seq_lens)):
        tables[b, : nblocks[b]] = [free.pop() for _ in range(nblocks[b])]
        slots += [int(tables[b, p // BS]) * BS + p % BS for p in range(n - q, n)]
    return AttentionMetadata(
        slot_mapping=torch.tensor(slots),
        cu_seqlens_q=torch.tensor(np.cumsum([0, *q_lens]), dtype=torch.int32),
        seq_lens=torch.tensor(seq_lens, dtype=torch.int32),
        block_tables=torch.from_numpy(tables),
        max_seqlen_q=max(q_lens),
        max_seqlen_k=max(seq_lens),
        query_lens_host=q_lens,
        seq_lens_host=seq_lens,
    )


def backend_of(name: str):
    """torch_ref, or cpu_sdpa with its decode rows on the C kernel ("cpu_sdpa") or on torch
    ops ("cpu_sdpa/torch")."""
    if name == "cpu_sdpa/torch":
        return CpuSdpaBackend(native=False)
    return get_backend(name)


def attend(backend: str, q_lens, seq_lens, seed: int = 0) -> torch.Tensor:
    """Store the step's K/V and attend, over a cache whose other slots hold NaN (so a read of a
    slot outside every context shows), with a fresh metadata per backend."""
    meta = step_metadata(q_lens, seq_lens, seed)
    gen = torch.Generator().manual_seed(seed)
    num_blocks = int(meta.block_tables.max()) + 8
    k_cache = torch.full((num_blocks, BS, KV_HEADS, DIM), float("nan"))
    v_cache = k_cache.clone()
    # the cached context (everything but the new tokens) is written before the step
    for b, (q, n) in enumerate(zip(q_lens, seq_lens)):
        for p in range(n - q):
            blk, off = int(meta.block_tables[b, p // BS]), p % BS
            k_cache[blk, off] = torch.randn(KV_HEADS, DIM, generator=gen)
            v_cache[blk, off] = torch.randn(KV_HEADS, DIM, generator=gen)
    t = sum(q_lens)
    q = torch.randn(t, HEADS, DIM, generator=gen)
    k, v = (
        torch.randn(t, KV_HEADS, DIM, generator=gen),
        torch.randn(t, KV_HEADS, DIM, generator=gen),
    )
    impl = backend_of(backend)
    impl.store_kv(k, v, k_cache, v_cache, meta)
    return impl.attend(q, k_cache, v_cache, meta, DIM**-0.5)


STEPS = {
    "decode, contexts from 1 to 70": ([1] * 10, [1, 3, 4, 5, 9, 16, 17, 31, 40, 70]),
    "one decode row": ([1], [13]),
    "fresh prefills": ([7, 1, 12], [7, 1, 12]),
    "mixed: decodes, a chunk after a cached prefix, a fresh prefill": (
        [1, 5, 1, 9, 1],
        [22, 13, 3, 9, 30],
    ),
    # a decode with k draft tokens is k + 1 queries after its cached context (speculative
    # decoding), next to plain decodes
    "speculative: decodes of 1 + k queries among plain decodes": (
        [1, 4, 1, 6, 2],
        [20, 17, 5, 33, 9],
    ),
}


@pytest.fixture(scope="module")
def native():
    if decode_kernel(torch.float32, HEADS // KV_HEADS, DIM, 16) is None:
        pytest.skip("no C compiler here: the native decode kernel is not built")


PATHS = ["cpu_sdpa/torch", "cpu_sdpa"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", STEPS)
def test_cpu_sdpa_matches_the_reference(name, path, request):
    if path == "cpu_sdpa":
        request.getfixturevalue("native")
    q_lens, seq_lens = STEPS[name]
    ref = attend("torch_ref", q_lens, seq_lens)
    out = attend(path, q_lens, seq_lens)
    assert not out.isnan().any()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


POSITION_BYTES = 2 * KV_HEADS * DIM * 4


@pytest.mark.parametrize("threads", [1, 3])
def test_the_native_kernel_runs_the_decode_rows(native, threads):
    """It computes the decode rows (no torch groups are planned), split between ``threads``."""
    q_lens, seq_lens = [1, 4, 1, 1, 1, 1], [70, 4, 33, 1, 16, 100]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = attend("cpu_sdpa", q_lens, seq_lens, seed=3)
    finally:
        torch.set_num_threads(before)
    ref = attend("torch_ref", q_lens, seq_lens, seed=3)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    meta = step_metadata(q_lens, seq_lens)
    cache = torch.zeros(int(meta.block_tables.max()) + 1, BS, KV_HEADS, DIM)
    CpuSdpaBackend().attend(torch.randn(9, HEADS, DIM), cache, cache, meta, 1.0)
    assert meta.plan.decode == [] and len(meta.plan.decode_rows) == 5


@pytest.mark.parametrize("group_bytes", [1 << 20, 24 * POSITION_BYTES])
def test_the_plan_gathers_each_context_once_and_pads_little(group_bytes, monkeypatch):
    monkeypatch.setattr(cpu_sdpa, "GROUP_BYTES", group_bytes)
    q_lens = [1, 6, 1, 1, 1, 1, 1, 1, 1]
    seq_lens = [30, 6, 2, 31, 9, 10, 24, 8, 9]
    meta = step_metadata(q_lens, seq_lens)
    plan = plan_step(meta, BS, POSITION_BYTES, torch.float32)
    starts = np.cumsum([0, *q_lens])[:-1]
    tables = meta.block_tables.numpy()
    seen, first = [], 0
    for g in plan.decode:
        rows = plan.decode_rows[first : first + g.count].tolist()
        first += g.count
        lens = [seq_lens[list(starts).index(r)] for r in rows]
        assert g.length == max(lens) and max(lens) <= GROUP_RATIO * min(lens)
        assert len(rows) == 1 or len(rows) * g.length * POSITION_BYTES <= group_bytes
        slots = g.slots.view(len(rows), g.length)
        for i, (r, n) in enumerate(zip(rows, lens)):
            b = list(starts).index(r)
            want = [int(tables[b, p // BS]) * BS + p % BS for p in range(n)]
            assert slots[i, :n].tolist() == want
            assert (slots[i, n:] == want[0]).all()  # padding repeats a written slot
            if g.mask is not None:
                assert g.mask[i, 0, 0].tolist() == [0.0] * n + [-torch.inf] * (g.length - n)
        seen += rows
    assert sorted(seen) == [s for s, q in zip(starts, q_lens) if q == 1]
    # contexts 2 | 8 9 9 10 | 24 | 30 31; with room for 24 positions 2 | 8 9 | 9 10 | 24 | 30 | 31
    assert len(plan.decode) == (4 if group_bytes == 1 << 20 else 6)
    assert [(p.start, p.q_len) for p in plan.prefill] == [(1, 6)]
    assert plan.prefill[0].mask is None  # a fresh prefill: the plain causal mask


def test_buffers_are_reused_and_grow():
    backend = CpuSdpaBackend(native=False)
    for seq_lens in ([5, 6], [40, 41, 39], [3]):
        meta = step_metadata([1] * len(seq_lens), seq_lens)
        cache = torch.randn(int(meta.block_tables.max()) + 1, BS, KV_HEADS, DIM)
        q = torch.randn(len(seq_lens), HEADS, DIM)
        out = backend.attend(q, cache, cache, meta, 1.0)
        ref = get_backend("torch_ref").attend(q, cache, cache, meta, 1.0)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert backend._buffers[0].numel() >= 3 * 41 * KV_HEADS * DIM


def test_auto_picks_cpu_sdpa_on_cpu():
    assert resolve_backend_name("auto", "cpu") == "cpu_sdpa"
    assert resolve_backend_name("torch_ref", "cpu") == "torch_ref"


def test_cpu_sdpa_is_refused_on_a_cuda_device():
    """Its plan lives on the host: on a GPU it would fail deep inside the first forward pass."""
    with pytest.raises(ConfigError, match="CPU device only.*'triton'"):
        resolve_backend_name("cpu_sdpa", "cuda")
    assert resolve_backend_name("torch_ref", "cuda") == "torch_ref"


def test_the_engine_generates_the_same_tokens_with_either_backend(second_model):
    """Greedy, GQA 4, chunked prefill (16-token budget) and prefix-cache hits (shared prompts)."""
    rng = random.Random(1)
    shared = [rng.randrange(3, 400) for _ in range(20)]
    prompts = [shared + [rng.randrange(3, 400) for _ in range(n)] for n in (1, 9, 30)]
    prompts += [[rng.randrange(3, 400) for _ in range(n)] for n in (2, 45)]
    params = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)
    outs = {}
    for backend in ("torch_ref", "cpu_sdpa"):
        with LLM(
            second_model,
            kvcache_block_size=16,
            max_num_batched_tokens=16,
            attention_backend=backend,
            device="cpu",  # cpu_sdpa is a CPU backend (this also runs on a GPU machine)
        ) as llm:
            llm.generate(prompts[:1], params, use_tqdm=False)  # its blocks are cached: later hits
            outs[backend] = [o["token_ids"] for o in llm.generate(prompts, params, use_tqdm=False)]
    assert outs["cpu_sdpa"] == outs["torch_ref"]


def test_without_a_compiler_the_torch_path_runs(monkeypatch):
    """No kernel when it is turned off or cannot be built (fresh shapes: the builds are cached)."""
    monkeypatch.setenv("NANOVLLM_CPU_KERNEL", "0")
    assert decode_kernel(torch.float32, 5, 24, 16) is None
    monkeypatch.delenv("NANOVLLM_CPU_KERNEL")
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert decode_kernel(torch.float32, 5, 40, 16) is None
    assert decode_kernel(torch.bfloat16, 2, 8, 16) is None  # float32 only
    assert decode_kernel(torch.float32, 2, 8, 8) is None  # blocks of 16 positions or more
