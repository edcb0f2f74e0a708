"""Where a decode step's time goes (GPU): the step's parts, then a per-kernel table.

    python benchmarks/profile_decode.py [--model PATH] [--eager] [--steps 5] [--batch 1 16 256]
        [--skinny-gemm] [--no-fused-kv-store]

``--no-fused-kv-store`` (Config.fused_kv_store=False) puts the separate KV-store launch back, so
two runs A/B attention's prologue storing K/V itself (its kernel is counted under "fused
elementwise"; the separate one under "KV store").

1. For each ``--batch`` (default 256): at 256 the workload of bench.py, else that many requests
   of 512 random prompt tokens (the prompt of bench.py's batch-1 figure), is admitted and
   prefilled; then 30 decode steps at batch 256 are timed
   one at a time (``step()``: schedule, prepare, forward, sample, postprocess; medians in ms), and
   30 more with overlap scheduling (``step_overlapped()``: the step interval hides the host work).
2. ``--steps`` decode steps run under torch.profiler (CUDA activity). Each kernel's device time
   per step, its share of the step's kernel time and its calls per step are printed, grouped by
   kind: attention, KV store, GEMMs, fused elementwise (norms, rotary, SiLU: our Triton kernels,
   or torch.compile's with ``elementwise="compile"``), sampler, copies, other. For the kinds
   whose traffic is known from the shapes, the table prints bytes moved per step and the
   achieved bandwidth (GEMMs also FLOP/s):
     GEMMs:     the weights of every projection (28 layers x qkv, o, gate_up, down; the logits
                projection once) + their activations in and out, 2 bytes each; 2 x M x params
                FLOPs at M = batch rows;
     attention: the KV of every context token of every layer (what a decode step must read).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from nanovllm import LLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

KINDS = (  # first match wins
    ("attention", r"paged_attention|merge_splits"),
    ("KV store", r"store_kvcache"),
    ("GEMM", r"gemm|nvjet|xmma|cutlass|splitK|cublas|skinny"),
    ("sampler", r"gumbel|argmax|sampl"),
    ("fused elementwise", r"^triton_|rms_norm|silu_and_mul|qk_norm_rope"),
    ("copies", r"Memcpy|Memset"),
)


def kind_of(name: str) -> str:
    return next((k for k, pattern in KINDS if re.search(pattern, name)), "other")


def decode_timing(step, n: int) -> dict:
    records = [r for r in (step() for _ in range(n)) if r is not None]
    decode = [r for r in records if r.phase == "decode"]
    return {
        k: 1e3 * statistics.median(getattr(r.timing, k) for r in decode)
        for k in ("schedule", "prepare", "forward", "sample", "postprocess", "total")
    }


def gemm_traffic(spec, rows: int) -> tuple[float, float]:
    """(bytes, FLOPs) of one decode step's projections at ``rows`` batch rows, bf16."""
    h, q = spec.hidden_size, spec.num_attention_heads * spec.head_dim
    kv, inter = spec.num_key_value_heads * spec.head_dim, spec.intermediate_size
    shapes = [(h, q + 2 * kv), (q, h), (h, 2 * inter), (inter, h)]  # (in, out) per layer
    params = spec.num_hidden_layers * sum(k * n for k, n in shapes) + h * spec.vocab_size
    acts = spec.num_hidden_layers * sum(rows * (k + n) for k, n in shapes)
    acts += rows * (h + spec.vocab_size)
    return 2.0 * (params + acts), 2.0 * rows * params


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--eager", action="store_true")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, nargs="+", default=[256], help="decode batch sizes")
    ap.add_argument("--skinny-gemm", action="store_true", help="Config.skinny_gemm=True")
    ap.add_argument("--no-fused-kv-store", action="store_true", help="Config.fused_kv_store=False")
    args = ap.parse_args()
    path = args.model or os.path.join(tempfile.gettempdir(), "nanovllm-random-qwen3-0.6b")
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        from nanovllm.testing.random_model import QWEN3_0_6B, make_random_model

        make_random_model(path, QWEN3_0_6B, device="cuda")
    # max_model_len: min(4096, the model's)
    flags = dict(skinny_gemm=args.skinny_gemm, fused_kv_store=not args.no_fused_kv_store)
    with LLM(path, enforce_eager=args.eager, **flags) as llm:
        c = llm.config
        backend = getattr(llm.executor, "backend_name", c.attention_backend)
        print(f"config: {flags}, elementwise={c.elementwise}, attention backend={backend}")
        for batch in args.batch:
            profile_batch(llm, batch, args.steps)


def requests(batch: int, vocab: int):
    """bench.py's workload at 256; else ``batch`` requests of 512 random prompt tokens."""
    from random import randint, seed

    from bench import workload

    from nanovllm import SamplingParams

    if batch == 256:
        return workload()
    seed(2)
    prompts = [[randint(0, min(10000, vocab - 1)) for _ in range(512)] for _ in range(batch)]
    return prompts, [SamplingParams(temperature=0.6, ignore_eos=True, max_tokens=1024)] * batch


def profile_batch(llm: LLM, batch: int, steps: int) -> None:
    prompts, params = requests(batch, llm.config.spec.vocab_size)
    llm.reset_prefix_cache()
    ids = [llm.add_request(p, sp) for p, sp in zip(prompts, params)]
    while llm.scheduler.waiting or any(
        s.num_computed_tokens < s.num_prompt_tokens for s in llm.scheduler.running
    ):
        llm.step()  # the prefill steps
    rows = len(llm.scheduler.running)
    one = decode_timing(llm.step, 30)
    print(
        f"decode steps at batch {rows}, one at a time: "
        + ", ".join(f"{k}={v:.2f} ms" for k, v in one.items())
    )
    if llm.config.overlap_scheduling:
        over = decode_timing(llm.step_overlapped, 30)
        llm.drain()
        print(
            "overlapped: "
            + ", ".join(f"{k}={v:.2f} ms" for k, v in over.items())
            + f"; step interval {over['total']:.2f} ms vs {one['total']:.2f} ms"
        )
    context = sum(s.num_tokens for s in llm.scheduler.running)
    on_gpu = torch.cuda.is_available()  # on CPU (a dry run): operators' CPU time instead
    with profile(activities=[ProfilerActivity.CUDA if on_gpu else ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            llm.step()
        if on_gpu:
            torch.cuda.synchronize()
    spec = llm.config.spec
    for request_id in ids:  # the next batch starts from an empty engine
        llm.forget(request_id)
    kernels = defaultdict(lambda: [0.0, 0])  # name -> [device us, calls]
    for evt in prof.key_averages():
        us = evt.self_device_time_total if on_gpu else evt.self_cpu_time_total
        if us > 0:
            kernels[evt.key][0] += us / steps
            kernels[evt.key][1] += evt.count / steps
    total = sum(us for us, _ in kernels.values())
    by_kind = defaultdict(list)
    for name, (us, calls) in kernels.items():
        by_kind[kind_of(name)].append((us, calls, name))
    gemm_bytes, gemm_flops = gemm_traffic(spec, rows)
    kv_bytes = spec.kv_bytes_per_token(2, 1) * context
    traffic = {"GEMM": (gemm_bytes, gemm_flops), "attention": (kv_bytes, None)}
    print(
        f"\nkernels of one decode step (mean of {steps}; batch {rows}, {context} context "
        f"tokens): {total / 1e3:.3f} ms of kernel time"
    )
    print(f"{'kind / kernel':<66} {'us':>8} {'share':>6} {'calls':>6}  traffic")
    for kind, rows_ in sorted(by_kind.items(), key=lambda kv: -sum(r[0] for r in kv[1])):
        us = sum(r[0] for r in rows_)
        extra = ""
        if kind in traffic:
            nbytes, flops = traffic[kind]
            extra = f"{nbytes / 1e6:,.1f} MB -> {nbytes / (us * 1e-6) / 1e12:.2f} TB/s"
            if flops:
                extra += f", {flops / (us * 1e-6) / 1e12:.0f} TFLOP/s"
        calls = sum(r[1] for r in rows_)
        print(f"{kind.upper():<66} {us:8.1f} {us / total:6.1%} {calls:6.0f}  {extra}")
        for k_us, k_calls, name in sorted(rows_, reverse=True)[:6]:
            print(f"  {name[:64]:<64} {k_us:8.1f} {k_us / total:6.1%} {k_calls:6.0f}")


if __name__ == "__main__":
    main()
