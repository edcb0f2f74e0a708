"""Tensor parallelism on two GPUs (nvidia-h200-x2): correctness, clean create/close, scaling.

    python benchmarks/tp_gpu_check.py [--skip-bench]

1. Greedy outputs with tensor_parallel_size=2 equal tensor_parallel_size=1 on a random Qwen3-0.6B
   in float32, with CUDA graphs on and off (mixed prompt lengths, chunked prefill, prefix hits).
2. Create / generate / close cycles on two GPUs leave no child processes and give back GPU memory.
3. BENCH.md's workload on a random Qwen3-8B at tensor_parallel_size 1 and 2: speedup and floors.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import tempfile
import time

import torch

from nanovllm import LLM, SamplingParams


def gpu_used_gib() -> list[float]:
    out = []
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        out.append(round((total - free) / 2**30, 2))
    return out


def correctness(path: str) -> bool:
    rng = random.Random(0)
    shared = [rng.randrange(10000) for _ in range(300)]
    prompts = [[rng.randrange(10000) for _ in range(n)] for n in (1, 9, 100, 257, 700)]
    prompts += [shared + [1, 2], shared + [3]]
    params = SamplingParams(temperature=0, max_tokens=32, ignore_eos=True)
    ok = True
    for eager in (True, False):
        outs = {}
        for tp in (1, 2):
            t = time.perf_counter()
            with LLM(
                path,
                tensor_parallel_size=tp,
                dtype="float32",
                enforce_eager=eager,
                max_model_len=2048,
                max_num_batched_tokens=512,
                max_num_seqs=4,
                gpu_memory_utilization=0.5,
            ) as llm:
                outs[tp] = [o["token_ids"] for o in llm.generate(prompts, params, use_tqdm=False)]
                hits = llm.get_metrics()["prefix_hit_tokens"]
            print(
                f"  tp={tp} {'eager ' if eager else 'graphs'}: {time.perf_counter() - t:.1f} s, "
                f"prefix hits {hits}"
            )
        same = outs[1] == outs[2]
        ok &= same
        print(f"greedy TP=2 == TP=1 ({'eager' if eager else 'CUDA graphs'}, float32): {same}")
    return ok


def cycles(path: str, n: int = 4) -> bool:
    base = gpu_used_gib()
    for i in range(n):
        tp = 1 + i % 2
        with LLM(
            path,
            tensor_parallel_size=tp,
            max_model_len=1024,
            gpu_memory_utilization=0.3,
            enforce_eager=True,
        ) as llm:
            llm.generate([[1, 2, 3]] * 4, SamplingParams(max_tokens=8), use_tqdm=False)
            during = gpu_used_gib()
        torch.cuda.synchronize()
        time.sleep(1.0)
        after = gpu_used_gib()
        print(
            f"cycle {i} tp={tp}: GPU used GiB before {base} during {during} after {after}; "
            f"children {len(multiprocessing.active_children())}"
        )
    leftover = [a - b for a, b in zip(gpu_used_gib(), base)]
    clean = all(x < 1.0 for x in leftover) and not multiprocessing.active_children()
    print(f"create/close cycles clean: {clean} (GPU memory left over per GPU: {leftover} GiB)")
    return clean


def bench_8b() -> None:
    from bench import (
        count_params,
        floor_seconds,
        measure_bandwidth,
        measure_matmul,
        run_engine,
        workload,
    )

    from nanovllm.testing.random_model import QWEN3_8B, make_random_model

    path = os.path.join(tempfile.gettempdir(), "nanovllm-random-qwen3-8b")
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        t = time.perf_counter()
        make_random_model(path, QWEN3_8B, device="cuda")
        print(f"built random Qwen3-8B in {time.perf_counter() - t:.1f} s")
    prompts, params = workload()
    bw, flops = measure_bandwidth(), measure_matmul()
    print(f"B={bw / 1e12:.2f} TB/s F={flops / 1e12:.0f} TFLOP/s per GPU")
    results = {}
    for tp in (1, 2):
        with LLM(path, max_model_len=4096, tensor_parallel_size=tp) as llm:
            warm, _ = workload(16, seed_=1)  # shares no prefix with the timed workload
            llm.generate(
                warm,
                [SamplingParams(temperature=0.6, ignore_eos=True, max_tokens=16)] * 16,
                use_tqdm=False,
            )
            llm.reset_prefix_cache()
            tokens, elapsed, _ = run_engine(llm, prompts, params, recorder=False)
            fl = floor_seconds(
                llm.config.spec, count_params(llm.config.spec), prompts, params, bw, flops, tp
            )
        results[tp] = elapsed
        print(
            f"Qwen3-8B tp={tp}: {tokens} tokens in {elapsed:.2f} s = "
            f"{tokens / elapsed:,.0f} tok/s; "
            f"floor {fl['floor_s']:.2f} s (kv {fl['kv_s']:.2f}, weights {fl['weights_s']:.2f}, "
            f"matmul {fl['matmul_s']:.2f}); efficiency {fl['floor_s'] / elapsed:.2f}"
        )
    print(
        f"bench: model=qwen3-8b tp1_s={results[1]:.2f} tp2_s={results[2]:.2f} "
        f"speedup={results[1] / results[2]:.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-bench", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    print(f"GPUs: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}")
    from nanovllm.testing.random_model import QWEN3_0_6B, make_random_model

    path = str(
        make_random_model(
            os.path.join(tempfile.gettempdir(), "qwen3-0.6b-fp32"),
            QWEN3_0_6B,
            dtype="float32",
            device="cuda",
        )
    )
    ok = correctness(path)
    clean = cycles(path)
    if not args.skip_bench:
        bench_8b()
    print(f"tp check: correct={ok} clean={clean}")


if __name__ == "__main__":
    main()
