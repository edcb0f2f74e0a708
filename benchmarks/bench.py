"""The throughput benchmark (../shared/BENCH.md): nano-vllm's workload, reported against the
physical floor measured in the same run.

    python benchmarks/bench.py                       # random Qwen3-0.6B built from its config
    python benchmarks/bench.py --model /path/ckpt    # a real checkpoint
    python benchmarks/bench.py --peer 32             # also HF transformers on the first 32 requests
    python benchmarks/bench.py --arch llama-3.2-1b   # other shapes: see random_model.ARCHS

Qwen3-30B-A3B (``--arch qwen3-30b-a3b``) writes no weight file (61 GB): the engine draws its
weights on the GPU (``load_format="random"``). For MoE models the bench also records the tokens
routed to each expert per step (``RunTiming.expert_tokens``) and prints how many experts a
decode step touched; floor.py says how the MoE floor is counted.

The headline is the median of three timed runs after a warm-up shaped like the workload (every
prefill, mixed and decode shape compiled and allocated), each on an emptied prefix cache, with
overlap scheduling as configured ("auto": on); then one run with overlap off on the same engine,
one with a Recorder attached (the per-part step breakdown), batch-1 decode latency against its
floor, and optionally the Hugging Face peer. Prints the figures and ends with one
machine-readable ``bench:`` line.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from random import randint, seed

import numpy as np
import torch

from nanovllm import LLM, SamplingParams
from nanovllm.engine.observe.recorder import Recorder

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # floor.py, also when loaded by path
from floor import (  # noqa: E402
    count_params,
    floor_seconds,
    measure_bandwidth,
    measure_matmul,
    touched_experts,
)

__all__ = ["count_params", "floor_seconds", "measure_bandwidth", "measure_matmul", "workload"]


def workload(num_seqs=256, max_input_len=1024, max_output_len=1024, seed_=0):
    seed(seed_)
    prompts = [
        [randint(0, 10000) for _ in range(randint(100, max_input_len))] for _ in range(num_seqs)
    ]
    max_tokens = [randint(100, max_output_len) for _ in range(num_seqs)]
    params = [SamplingParams(temperature=0.6, ignore_eos=True, max_tokens=m) for m in max_tokens]
    return prompts, params


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
    """Medians over the decode steps at ``batch``: each part of a step in ms (schedule, prepare,
    postprocess on the host; forward and sample device time), the step interval ("step": wall
    time between step finishes), and the shares of the step outside the forward."""
    df = rec.steps
    df = df[(df.phase == "decode") & (df.num_seqs >= batch)]
    if df.empty:
        df = rec.steps[rec.steps.phase == "decode"]
    host = (df.t_schedule + df.t_prepare + df.t_postprocess) / df.t_total
    parts = {
        f"{k}_ms": 1e3 * df[f"t_{k}"].median()
        for k in ("schedule", "prepare", "postprocess", "forward", "sample")
    }
    return dict(
        steps=len(df),
        step_ms=1e3 * df.t_total.median(),
        **parts,
        host_fraction=float(host.median()),
        non_forward_fraction=float(((df.t_total - df.t_forward) / df.t_total).median()),
    )


def timed_runs(llm: LLM, prompts, params, n: int = 3) -> list[tuple[int, float]]:
    """``n`` timed runs, each on an emptied prefix cache: (tokens, seconds) each."""
    runs = []
    for _ in range(n):
        llm.reset_prefix_cache()
        tokens, elapsed, _ = run_engine(llm, prompts, params, recorder=False)
        runs.append((tokens, elapsed))
    return runs


def batch1_latency(llm: LLM, spec, bw: float, prompt_len: int = 512, new: int = 256) -> None:
    """Decode time per token of one request with a ``prompt_len``-token prompt (what a person at
    the workbench feels), against its floor: the weights and its KV read once per token."""
    seed(2)
    prompt = [randint(0, 10000) for _ in range(prompt_len)]
    sp = SamplingParams(temperature=0.6, ignore_eos=True, max_tokens=new)
    per_token = {}
    for overlap in (True, False):
        llm.config = dataclasses.replace(llm.config, overlap_scheduling=overlap)
        llm.reset_prefix_cache()
        rec = Recorder().attach(llm)
        llm.generate([prompt], sp, use_tqdm=False)
        rec.detach()
        df = rec.steps[rec.steps.phase == "decode"]
        per_token[overlap] = (1e3 * df.t_total.median(), 1e3 * df.t_forward.median())
    weights = count_params(spec) * 2  # bf16
    kv = spec.kv_bytes_per_token(2, 1) * (prompt_len + new // 2)
    floor_ms = 1e3 * (weights + kv) / bw
    (on, fwd), (off, _) = per_token[True], per_token[False]
    print(
        f"batch 1 ({prompt_len}-token prompt): {on:.3f} ms per token with overlap "
        f"({1e3 / on:,.0f} tok/s), {off:.3f} ms without; forward {fwd:.3f} ms; floor "
        f"{floor_ms:.3f} ms (weights {weights / 1e9:.2f} GB + KV {kv / 1e6:.1f} MB over B); "
        f"floor / measured {floor_ms / on:.2f}"
    )


def run_peer(model_path: str, prompts, params, n: int) -> float | None:
    """Hugging Face transformers' continuous batching on the first ``n`` requests: tok/s."""
    try:
        from transformers import AutoModelForCausalLM, GenerationConfig

        model = (
            AutoModelForCausalLM.from_pretrained(
                model_path, dtype=torch.bfloat16, attn_implementation="paged|sdpa"
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


def model_path(arch: str) -> tuple[str, str]:
    """A random model of ``arch`` built from its config: (path, load_format)."""
    from nanovllm.testing.random_model import ARCHS, architecture, make_random_model

    config = ARCHS[arch]
    huge = architecture(config) == "Qwen3MoeForCausalLM"  # 61 GB: no file, random weights
    name = (
        f"nanovllm-random-{arch}" if arch not in ("0.6b", "8b") else f"nanovllm-random-qwen3-{arch}"
    )
    path = os.path.join(tempfile.gettempdir(), name)
    if not os.path.exists(os.path.join(path, "config.json" if huge else "model.safetensors")):
        t = time.perf_counter()
        make_random_model(path, config, device="cuda", weights=not huge)
        print(f"built random {arch} in {time.perf_counter() - t:.1f} s")
    return path, "random" if huge else "safetensors"


class ExpertLoad:
    """Collects ``RunTiming.expert_tokens`` of every step (MoE, TP=1): [layers, experts] each."""

    def __init__(self, runner):
        self.runner, self.steps, self._shapes = runner, [], []
        self._launch, self._collect = runner.launch, runner.collect
        runner.launch, runner.collect = self._launched, self._collected

    def _launched(self, inputs):
        self._shapes.append((inputs.num_tokens, inputs.is_decode_only))
        return self._launch(inputs)

    def _collected(self, launched):
        out, timing = self._collect(launched)
        shape = self._shapes.pop(0)
        if timing.expert_tokens is not None:
            self.steps.append((*shape, timing.expert_tokens))
        return out, timing

    def report(self, spec) -> None:
        e, k = spec.moe.num_experts, spec.moe.top_k
        decode = [(n, c) for n, d, c in self.steps if d]
        assert all(int(c.sum()) == n * k * c.shape[0] for n, _, c in self.steps), "counts"
        big = [(n, c) for n, c in decode if n >= 128] or decode
        touched = np.mean([(c > 0).sum(axis=1).mean() for _, c in big])
        n_mean = np.mean([n for n, _ in big])
        total = sum(c for _, _, c in self.steps)
        print(
            f"expert load: {len(self.steps)} steps recorded; decode steps with >= 128 tokens "
            f"touch {touched:.1f} of {e} experts per layer on average (uniform routing of "
            f"{n_mean:.0f} tokens: {touched_experts(e, k, round(n_mean)):.1f}); over the run the "
            f"busiest expert got {total.max() / total.mean():.2f}x the mean load"
        )


def breakdown(rec, elapsed_r: float) -> None:
    df = rec.steps
    by_phase = df.groupby("phase").agg(
        steps=("step", "size"),
        total_s=("t_total", "sum"),
        forward_s=("t_forward", "sum"),
        sample_s=("t_sample", "sum"),
    )
    host_s = (df.t_schedule + df.t_prepare + df.t_postprocess).sum()
    print(
        f"steps by phase:\n{by_phase.to_string()}\nhost (schedule+prepare+postprocess) "
        f"{host_s:.2f} s; outside step() {elapsed_r - df.t_total.sum():.2f} s"
    )
    ho = host_overhead(rec)
    print("decode steps at batch 256: " + ", ".join(f"{k}={v:.3f}" for k, v in ho.items()))


def main() -> None:
    from nanovllm.testing.random_model import ARCHS

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="checkpoint dir; default: random --arch")
    ap.add_argument("--arch", default="0.6b", choices=sorted(ARCHS))
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--enforce-eager", action="store_true")
    ap.add_argument("--elementwise", default="auto", help="triton | compile | torch (Config)")
    ap.add_argument("--skinny-gemm", action="store_true", help="Config.skinny_gemm=True")
    ap.add_argument("--no-fused-kv-store", action="store_true", help="Config.fused_kv_store=False")
    ap.add_argument("--peer", type=int, default=0, help="run HF continuous batching on N requests")
    ap.add_argument("--num-seqs", type=int, default=256)
    ap.add_argument("--no-recorder-run", action="store_true", help="skip the Recorder run")
    ap.add_argument("--runs", type=int, default=3, help="timed runs; the median is the headline")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench.py measures a GPU; on CPU run benchmarks/cpu_bench.py")
    path, load_format = (args.model, "safetensors") if args.model else model_path(args.arch)
    prompts, params = workload(args.num_seqs)
    print(
        f"workload: {len(prompts)} requests, {sum(map(len, prompts))} prompt tokens, "
        f"{sum(sp.max_tokens for sp in params)} output tokens"
    )
    bw, flops = measure_bandwidth(), measure_matmul()
    print(
        f"device: {torch.cuda.get_device_name()}  B={bw / 1e12:.2f} TB/s  "
        f"F={flops / 1e12:.0f} TFLOP/s"
    )
    t = time.perf_counter()
    llm = LLM(
        path,
        max_model_len=4096,
        tensor_parallel_size=args.tp,
        attention_backend=args.backend,
        enforce_eager=args.enforce_eager,
        elementwise=args.elementwise,
        load_format=load_format,
        skinny_gemm=args.skinny_gemm,
        fused_kv_store=not args.no_fused_kv_store,
    )
    runner = getattr(llm.executor, "model", None) and llm.executor
    print(
        f"engine up in {time.perf_counter() - t:.1f} s "
        f"({getattr(runner, 'startup', {})}); KV blocks {llm.config.num_kvcache_blocks}; "
        f"memory {getattr(runner, 'memory_report', None)}; overlap scheduling "
        f"{llm.config.overlap_scheduling}; elementwise {llm.config.elementwise}; fused KV store "
        f"{llm.config.fused_kv_store}"
    )
    plan = getattr(runner, "gemm_plan", [])
    if plan:
        chosen = [str(r) for r in plan if r.config]
        print(
            f"skinny GEMM: the kernel for {len(chosen)} of {len(plan)} (shape, rows); "
            + "; ".join(chosen)
        )
    # the capture times only: a DecodeGraphs kept here would keep the KV cache alive past close()
    capture_times = dict(getattr(getattr(runner, "graphs", None), "capture_times", {}))
    if capture_times:
        per = sorted(capture_times.items(), key=lambda kv: -kv[1])
        print(
            f"graph capture: {len(per)} buckets, slowest "
            + ", ".join(f"{b}: {t:.2f} s" for b, t in per[:4])
            + f"; median {statistics.median(t for _, t in per):.2f} s"
        )
    # Warm-up: the workload's shape (its prefill steps of up to max_num_batched_tokens tokens,
    # mixed steps, decode at every batch size) with other prompts and 32 tokens each, so nothing
    # is left to compile or allocate; the prefix cache is emptied before each timed run.
    warm, _ = workload(args.num_seqs, seed_=1)
    warm_params = SamplingParams(temperature=0.6, ignore_eos=True, max_tokens=32)
    t = time.perf_counter()
    llm.generate(warm, warm_params, use_tqdm=False)
    print(f"warm-up {time.perf_counter() - t:.1f} s")
    spec = llm.config.spec
    load = ExpertLoad(runner) if spec.moe is not None and runner else None
    runs = timed_runs(llm, prompts, params, n=args.runs)
    tokens = runs[0][0]
    times = sorted(e for _, e in runs)
    elapsed = statistics.median(times)
    tok_s = tokens / elapsed
    fl = floor_seconds(spec, count_params(spec), prompts, params, bw, flops, args.tp)
    print(
        f"nanovllm: {tokens} tokens; {len(runs)} runs "
        + ", ".join(f"{e:.2f} s" for _, e in runs)
        + f"; median {elapsed:.2f} s = {tok_s:,.0f} tok/s; spread (max - min) / median "
        f"{(times[-1] - times[0]) / elapsed:.3f}"
    )
    print(
        "floor: "
        + ", ".join(f"{k}={v:.2f}" for k, v in fl.items())
        + f"; efficiency {fl['floor_s'] / elapsed:.3f}"
    )
    if load is not None:
        load.report(spec)
    if llm.config.overlap_scheduling:  # the same engine, stepping one step at a time
        llm.config = dataclasses.replace(llm.config, overlap_scheduling=False)
        llm.reset_prefix_cache()
        tokens_o, elapsed_o, _ = run_engine(llm, prompts, params, recorder=False)
        llm.config = dataclasses.replace(llm.config, overlap_scheduling=True)
        print(
            f"overlap off: {tokens_o / elapsed_o:,.0f} tok/s, {elapsed_o:.2f} s "
            f"(overlap on / off {elapsed_o / elapsed:.3f}x)"
        )
    if not args.no_recorder_run:
        # A timed run with a Recorder attached: the step breakdown, and what observing costs.
        llm.reset_prefix_cache()
        tokens_r, elapsed_r, rec = run_engine(llm, prompts, params, recorder=True)
        print(
            f"with a Recorder attached: {tokens_r / elapsed_r:,.0f} tok/s "
            f"(ratio to the bare median {elapsed / elapsed_r:.3f})"
        )
        breakdown(rec, elapsed_r)
    if args.tp == 1 and spec.moe is None:
        batch1_latency(llm, spec, bw)
    backend = getattr(llm.executor, "backend_name", args.backend)
    llm.close()
    del llm, runner, load  # what still refers to the engine: its memory must be free for the next
    if args.peer:
        # A second engine on this machine (Triton's and Inductor's caches are warm now: what a
        # restarted notebook kernel sees), then the first ``--peer`` requests on it and on HF.
        t = time.perf_counter()
        with LLM(path, max_model_len=4096) as llm2:
            runner2 = getattr(llm2.executor, "model", None) and llm2.executor
            print(
                f"second engine up in {time.perf_counter() - t:.1f} s (warm caches; "
                f"{getattr(runner2, 'startup', {})})"
            )
            warm = SamplingParams(temperature=0.6, ignore_eos=True, max_tokens=32)
            llm2.generate(prompts[-4:], warm, use_tqdm=False)  # its first prefill and decodes
            t_tokens, t_elapsed, _ = run_engine(
                llm2, prompts[: args.peer], params[: args.peer], recorder=False
            )
        torch.cuda.empty_cache()
        peer = run_peer(path, prompts, params, args.peer)
        if peer:
            print(
                f"same {args.peer} requests: nanovllm {t_tokens / t_elapsed:,.0f} tok/s vs "
                f"transformers {peer:,.0f} tok/s = {t_tokens / t_elapsed / peer:.1f}x"
            )
    print(
        f"bench: engine=nanovllm arch={args.model or args.arch} backend={backend} tp={args.tp} "
        f"tok={tokens} time_s={elapsed:.2f} tok_s={tok_s:.0f} floor_s={fl['floor_s']:.2f} "
        f"efficiency={fl['floor_s'] / elapsed:.2f}"
    )


if __name__ == "__main__":
    main()
