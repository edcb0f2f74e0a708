"""The throughput benchmark (../shared/BENCH.md): nano-vllm's workload, reported against the
physical floor measured in the same run.

    python benchmarks/bench.py                       # random Qwen3-0.6B built from its config
    python benchmarks/bench.py --model /path/ckpt    # a real checkpoint
    python benchmarks/bench.py --peer 32             # also HF transformers on the first 32 requests

Prints the figures and ends with one machine-readable ``bench:`` line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from random import randint, seed

import torch

from nanovllm import LLM, SamplingParams
from nanovllm.engine.observe.recorder import Recorder


def workload(num_seqs=256, max_input_len=1024, max_output_len=1024, seed_=0):
    seed(seed_)
    prompts = [
        [randint(0, 10000) for _ in range(randint(100, max_input_len))] for _ in range(num_seqs)
    ]
    max_tokens = [randint(100, max_output_len) for _ in range(num_seqs)]
    params = [SamplingParams(temperature=0.6, ignore_eos=True, max_tokens=m) for m in max_tokens]
    return prompts, params


def measure_bandwidth() -> float:
    """Bytes read + written per second by a large device-to-device copy (median of 10)."""
    src = torch.randn(2 * 2**30 // 4, device="cuda")
    dst = torch.empty_like(src)
    times = []
    for _ in range(12):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * src.numel() * 4 / statistics.median(times[2:])


def measure_matmul() -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    times = []
    for _ in range(12):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * 8192**3 / statistics.median(times[2:])


def floor_seconds(
    spec, num_params: int, prompts, params, bw: float, flops: float, tp: int = 1
) -> dict:
    kv_per_token = 2 * spec.num_hidden_layers * spec.num_key_value_heads * spec.head_dim * 2
    kv_tokens = sum(
        out * len(p) + out * (out - 1) // 2
        for p, out in ((p, sp.max_tokens) for p, sp in zip(prompts, params))
    )
    max_out = max(sp.max_tokens for sp in params)
    total_tokens = sum(map(len, prompts)) + sum(sp.max_tokens for sp in params)
    terms = dict(
        kv_s=kv_tokens * kv_per_token / bw / tp,
        weights_s=max_out * num_params * 2 / bw / tp,
        matmul_s=2 * num_params * total_tokens / flops / tp,
    )
    terms["floor_s"] = sum(terms.values())
    return terms


def count_params(spec) -> int:
    from math import prod

    from nanovllm.testing.random_model import qwen3_tensor_shapes

    shapes = qwen3_tensor_shapes(
        dict(
            hidden_size=spec.hidden_size,
            head_dim=spec.head_dim,
            intermediate_size=spec.intermediate_size,
            num_attention_heads=spec.num_attention_heads,
            num_key_value_heads=spec.num_key_value_heads,
            num_hidden_layers=spec.num_hidden_layers,
            vocab_size=spec.vocab_size,
            tie_word_embeddings=spec.tie_word_embeddings,
        )
    )
    return sum(prod(s) for s in shapes.values())


def run_engine(llm: LLM, prompts, params, recorder: bool):
    rec = Recorder().attach(llm) if recorder else None
    torch.cuda.synchronize()
    t = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    elapsed = time.perf_counter() - t
    if rec is not None:
        rec.detach()
    tokens = sum(len(o["token_ids"]) for o in outs)
    return tokens, elapsed, rec


def host_overhead(rec: Recorder, batch: int = 256) -> dict:
    df = rec.steps
    df = df[(df.phase == "decode") & (df.num_seqs >= batch)]
    if df.empty:
        df = rec.steps[rec.steps.phase == "decode"]
    host = (df.t_schedule + df.t_prepare + df.t_postprocess) / df.t_total
    return dict(
        steps=len(df),
        step_ms=1e3 * df.t_total.median(),
        forward_ms=1e3 * df.t_forward.median(),
        host_fraction=float(host.median()),
        non_forward_fraction=float(((df.t_total - df.t_forward) / df.t_total).median()),
    )


def run_peer(model_path: str, prompts, params, n: int) -> float | None:
    """Hugging Face transformers' continuous batching on the first ``n`` requests: tok/s."""
    try:
        from transformers import AutoModelForCausalLM, GenerationConfig

        model = (
            AutoModelForCausalLM.from_pretrained(
                model_path, dtype=torch.bfloat16, attn_implementation="sdpa_paged"
            )
            .cuda()
            .eval()
        )
        prompts, params = prompts[:n], params[:n]
        max_new = max(sp.max_tokens for sp in params)
        cfg = GenerationConfig(
            max_new_tokens=max_new,
            do_sample=True,
            temperature=0.6,
            eos_token_id=-1,
            pad_token_id=0,
            use_cuda_graph=False,
        )
        t = time.perf_counter()
        outs = model.generate_batch(inputs=prompts, generation_config=cfg, progress_bar=False)
        elapsed = time.perf_counter() - t
        tokens = sum(len(o.generated_tokens) for o in outs.values())
        print(
            f"peer: transformers generate_batch on {n} requests: {tokens} tokens in {elapsed:.1f} s"
        )
        del model
        torch.cuda.empty_cache()
        return tokens / elapsed
    except Exception as e:  # the peer is optional; say why it did not run
        print(f"peer: transformers continuous batching did not run: {type(e).__name__}: {e}")
        return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="checkpoint dir; default: random Qwen3-0.6B")
    ap.add_argument("--arch", default="0.6b", choices=["0.6b", "8b"])
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--enforce-eager", action="store_true")
    ap.add_argument("--peer", type=int, default=0, help="run HF continuous batching on N requests")
    ap.add_argument("--num-seqs", type=int, default=256)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench.py measures a GPU; on CPU run benchmarks/cpu_bench.py")
    path = args.model
    if path is None:
        from nanovllm.testing.random_model import QWEN3_0_6B, QWEN3_8B, make_random_model

        path = os.path.join(tempfile.gettempdir(), f"nanovllm-random-qwen3-{args.arch}")
        if not os.path.exists(os.path.join(path, "model.safetensors")):
            t = time.perf_counter()
            make_random_model(path, QWEN3_0_6B if args.arch == "0.6b" else QWEN3_8B, device="cuda")
            print(f"built random Qwen3-{args.arch} in {time.perf_counter() - t:.1f} s")
    prompts, params = workload(args.num_seqs)
    print(
        f"workload: {len(prompts)} requests, {sum(map(len, prompts))} prompt tokens, "
        f"{sum(sp.max_tokens for sp in params)} output tokens"
    )
    bw, flops = measure_bandwidth(), measure_matmul()
    print(
        f"device: {torch.cuda.get_device_name()}  B={bw / 1e12:.2f} TB/s  F={flops / 1e12:.0f} TFLOP/s"
    )
    t = time.perf_counter()
    llm = LLM(
        path,
        max_model_len=4096,
        tensor_parallel_size=args.tp,
        attention_backend=args.backend,
        enforce_eager=args.enforce_eager,
    )
    runner = getattr(llm.executor, "model", None) and llm.executor
    print(
        f"engine up in {time.perf_counter() - t:.1f} s; KV blocks {llm.config.num_kvcache_blocks}; "
        f"memory {getattr(runner, 'memory_report', None)}; graph capture "
        f"{getattr(getattr(runner, 'graphs', None), 'capture_seconds', float('nan')):.1f} s"
    )
    # One warm-up generate: a few requests shaped like the workload, so every kernel variant
    # (prefill, mixed prefill + decode, decode buckets) is compiled before timing.
    # Its prompts share nothing with the workload, and the prefix cache is emptied before each
    # timed run, so no run gets prefill for free.
    warm, _ = workload(16, seed_=1)
    llm.generate(
        warm, [SamplingParams(temperature=0.6, ignore_eos=True, max_tokens=16)] * 16, use_tqdm=False
    )
    llm.reset_prefix_cache()
    num_params = count_params(llm.config.spec)
    tokens, elapsed, _ = run_engine(llm, prompts, params, recorder=False)
    tok_s = tokens / elapsed
    fl = floor_seconds(llm.config.spec, num_params, prompts, params, bw, flops, args.tp)
    print(f"nanovllm: {tokens} tokens in {elapsed:.2f} s = {tok_s:,.0f} tok/s")
    print(
        "floor: "
        + ", ".join(f"{k}={v:.2f}" for k, v in fl.items())
        + f"; efficiency {fl['floor_s'] / elapsed:.3f}"
    )
    # A second timed run with a Recorder attached: the step breakdown, and what observing costs.
    llm.reset_prefix_cache()
    tokens_r, elapsed_r, rec = run_engine(llm, prompts, params, recorder=True)
    print(
        f"with a Recorder attached: {tokens_r / elapsed_r:,.0f} tok/s "
        f"(ratio to bare {elapsed / elapsed_r:.3f})"
    )
    df = rec.steps
    by_phase = df.groupby("phase").agg(
        steps=("step", "size"),
        total_s=("t_total", "sum"),
        forward_s=("t_forward", "sum"),
        sample_s=("t_sample", "sum"),
    )
    host_s = (df.t_schedule + df.t_prepare + df.t_postprocess).sum()
    print(
        f"steps by phase:\n{by_phase.to_string()}\nhost (schedule+prepare+postprocess) {host_s:.2f} s; "
        f"outside step() {elapsed_r - df.t_total.sum():.2f} s"
    )
    ho = host_overhead(rec)
    print("decode steps at batch 256: " + ", ".join(f"{k}={v:.3f}" for k, v in ho.items()))
    llm.close()
    peer = run_peer(path, prompts, params, args.peer) if args.peer else None
    if peer:
        with LLM(path, max_model_len=4096) as llm2:  # a fresh engine: an empty prefix cache
            t_tokens, t_elapsed, _ = run_engine(
                llm2, prompts[: args.peer], params[: args.peer], recorder=False
            )
        print(
            f"same {args.peer} requests: nanovllm {t_tokens / t_elapsed:,.0f} tok/s vs transformers "
            f"{peer:,.0f} tok/s = {t_tokens / t_elapsed / peer:.1f}x"
        )
    print(
        f"bench: engine=nanovllm backend={llm.executor.backend_name if hasattr(llm.executor, 'backend_name') else args.backend} "
        f"tp={args.tp} tok={tokens} time_s={elapsed:.2f} tok_s={tok_s:.0f} floor_s={fl['floor_s']:.2f} "
        f"efficiency={fl['floor_s'] / elapsed:.2f}"
    )


if __name__ == "__main__":
    main()
