"""One device call for issue 30's kernels: check them, time them against what they replace, and
measure the engine with and without one of them. Prints a short table last.

    python3 benchmarks/gpu_kernels_check.py [--out DIR] [--only SECTION ...] [--no-sweep]
        [--no-engine] [--engine-ab skinny_gemm|fused_kv_store] [--dry]

1. Sampler (layers/sampling_kernels.py vs the c295da4 kernel, _baseline_sampler.py): greedy,
   NaN/inf flags, seeded rows across batches, two statistical checks; time at B = 1 ... 256.
2. Skinny GEMM (layers/skinny_gemm.py vs cuBLAS): Qwen3-0.6B's qkv, o, gate_up, down at 1 ... 16
   rows, over 28 layers' weights each: every candidate config against float64; per-layer times;
   a wider config sweep; the start-up planner's choices and its time.
3. Fused KV store (_kcheck_kvstore.py: elementwise_kernels.qk_norm_rope_store_kv vs
   qk_norm_rope + store_kvcache): q and the caches bit-equal at Qwen3-0.6B's shapes (and a TP=2
   rank's), skipped slots, block sizes 16 and 256, a CUDA-graph replay on new slots; time per
   layer at 1, 16 and 256 tokens, 28 layers per graph.
4. Engine (random Qwen3-0.6B, bf16, CUDA graphs, max_model_len 4096 as bench.py): decode ms per
   token at batch 1 and 16 (512-token prompts, T = 0.6, overlap on), ``--engine-ab``'s Config
   flag off then on (default skinny_gemm); start-up parts and the GEMM plan.
Sections: sampler, gemv, kvstore, engine (``--only`` picks some; all by default).
Logs: $OUT (or --out) gets gpu_kernels_check.json. Exit status 1 if a check failed.
--dry: CPU, TRITON_INTERPRET=1, tiny shapes, wall-clock times (meaningless): checks the script.

Predictions (before the run; METHOD.md). Baselines from /work/gpu-logs/call1 (H200, HEAD c295da4):
- Sampler: the old loop runs about 120 SASS instructions per column (Philox4x32-10 per column
  with three of its four words unused, two accurate logs); the new one about 64 (one Philox call
  per 4 columns, one accurate log + lg2.approx), compiled here for sm_90 with no layout shuffles.
  B=256: kernel 194 us -> about 100 us (plus about 10 us of torch's reduction over chunks in both
  timings). B=1 and 16: 14 / 20 us -> about 5 / 8 us (149 or 800 programs instead of 19 or 304).
- Skinny GEMM, per layer at 1..16 rows (cuBLAS in the profile: qkv + gate_up 5.3 us average, o
  7.9, down 4.9 + 1.7 splitK reduce): qkv 8.4 MB -> 3.3 us, o 4.2 MB -> 2.2 us, gate_up 12.6 MB
  -> 4.5 us, down 6.3 MB -> 2.8 us (2 to 2.8 TB/s: small launches do not reach the 4.1 of a
  copy); per layer 25 -> 13 us, the decode step's GEMMs at batch 1: 777 -> about 440 us. The
  kernel's time should barely move from 1 to 16 rows (the rows are padded to 16); cuBLAS's does.
- Engine: batch-1 decode 1.35 -> about 1.0 ms per token; batch 16 about 1.9 -> 1.6 ms per step;
  engine start +2 to 4 s for the planner (three kernel variants to compile, about 80 timed
  graphs). bench.py's throughput: about +2% (the sampler's 0.09 ms of a 6.2 ms step at 256, and
  the tail steps at <= 16 rows), 23,985 -> about 24,400 tok/s, efficiency 0.735 -> about 0.75.
- Fused KV store (H100 profile of a batch-1 step: the elementwise kernels 1.5 us per launch on
  average, store_kvcache 1.25 us per layer, all latency-bound): the fused kernel costs about
  what qk_norm_rope does (its v programs are copies), so about 1.2 us per layer, 30 to 35 us per
  28-layer step, saved at 1 and 16 tokens; at 256 tokens a smaller share (k is no longer
  written out and read back). Engine, batch-1 decode: 1.357 -> about 1.32 ms per token.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

if "--dry" in sys.argv:
    os.environ["TRITON_INTERPRET"] = "1"  # before the first import of triton
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from _kcheck import DRY, Report  # noqa: E402

SECTIONS = ["sampler", "gemv", "kvstore", "engine"]


def engine_ab(report: Report, flag: str) -> dict:
    """Decode ms per token at batch 1 and 16, Config ``flag`` off then on (one engine at a
    time)."""
    from random import randint, seed

    from nanovllm import LLM, SamplingParams
    from nanovllm.engine.observe.recorder import Recorder

    if DRY:
        from nanovllm.testing import tiny_model_path

        path, prompt_len, new = str(tiny_model_path()), 24, 8
    else:
        from bench import model_path

        path, prompt_len, new = model_path("0.6b")[0], 512, 256
    seed(3)
    prompts = [[randint(0, 400 if DRY else 10000) for _ in range(prompt_len)] for _ in range(16)]
    sp = SamplingParams(temperature=0.6, ignore_eos=True, max_tokens=new)
    out = {}
    for on in (False, True):
        t = time.perf_counter()
        llm = LLM(
            path,
            max_model_len=4096 if not DRY else 256,
            max_num_seqs=16,
            num_kvcache_blocks=None if DRY else 300,
            **{flag: on},
        )
        up = time.perf_counter() - t
        runner = llm.executor
        info = dict(engine_up_s=up, startup=dict(getattr(runner, "startup", {})))
        info["plan"] = [str(r) for r in getattr(runner, "gemm_plan", [])]
        for batch in (1, 16):
            llm.generate(
                prompts[:batch], SamplingParams(max_tokens=4, ignore_eos=True), use_tqdm=False
            )
            llm.reset_prefix_cache()
            rec = Recorder().attach(llm)
            llm.generate(prompts[:batch], sp, use_tqdm=False)
            rec.detach()
            df = rec.steps[rec.steps.phase == "decode"]
            info[f"batch{batch}_ms"] = 1e3 * float(df.t_total.median())
            info[f"batch{batch}_forward_ms"] = 1e3 * float(df.t_forward.median())
        llm.close()
        del llm, runner
        out["on" if on else "off"] = info
        b1, b16 = info["batch1_ms"], info["batch16_ms"]
        print(f"  engine {flag}={on}: up {up:.1f} s {info['startup']}; batch 1 {b1:.3f} ms")
        print(f"    per token, batch 16 {b16:.3f} ms per step", flush=True)
        for line in info["plan"]:
            print(f"    {line}")
    for batch in (1, 16):
        off, on = out["off"][f"batch{batch}_ms"], out["on"][f"batch{batch}_ms"]
        note = f"per step, overlap on, {flag} off -> on"
        report.row("engine", f"decode B={batch} (ms)", off * 1e3, on * 1e3, note)
    report.row(
        "engine",
        "up (s)",
        out["off"]["engine_up_s"] * 1e6,
        out["on"]["engine_up_s"] * 1e6,
        f"plan {out['on']['startup'].get('gemm_plan_s', 0)} s",
    )
    return out


def print_table(report: Report) -> None:
    print("\n| what | case | old / cuBLAS | new | speedup | note |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in report.rows:
        unit = "s" if r["case"].endswith("(s)") else ("ms" if r["case"].endswith("(ms)") else "us")
        scale = {"us": 1.0, "ms": 1e-3, "s": 1e-6}[unit]
        old, new = r["old_us"] * scale, r["new_us"] * scale
        speed = f"{r['old_us'] / r['new_us']:.2f}x" if r["new_us"] > 0 else "-"
        print(
            f"| {r['what']} | {r['case']} | {old:.3g} {unit} | {new:.3g} {unit} | {speed} | "
            f"{r['note']} |"
        )
    failed = report.failed()
    print(f"checks: {len(report.checks) - len(failed)} passed, {len(failed)} failed")
    for c in failed:
        print(f"  FAILED {c['section']}: {c['name']} {c['detail']}")


def save(out_dir: str, report: Report, results: dict) -> None:
    os.makedirs(out_dir, exist_ok=True)
    log = dict(checks=report.checks, rows=report.rows, results=results)
    with open(os.path.join(out_dir, "gpu_kernels_check.json"), "w") as f:
        json.dump(log, f, indent=1, default=str)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/out"))
    ap.add_argument("--no-sweep", action="store_true", help="skip the wider GEMM config sweep")
    ap.add_argument("--no-engine", action="store_true", help="skip the engine A/B")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, default=SECTIONS, help="sections")
    ap.add_argument(
        "--engine-ab",
        choices=("skinny_gemm", "fused_kv_store"),
        default="skinny_gemm",
        help="the Config flag the engine section turns off, then on",
    )
    ap.add_argument("--dry", action="store_true", help="CPU, interpreter, tiny shapes")
    args = ap.parse_args()
    if not DRY and not torch.cuda.is_available():
        raise SystemExit("no GPU: run with --dry to check the script on CPU")
    import _kcheck_gemv
    import _kcheck_kvstore
    import _kcheck_sampler

    report, t0 = Report(), time.perf_counter()
    if not DRY:
        print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}", flush=True)
    results = {}
    for name, section in (
        ("sampler", lambda: _kcheck_sampler.run(report)),
        ("gemv", lambda: _kcheck_gemv.run(report, do_sweep=not args.no_sweep)),
        ("kvstore", lambda: _kcheck_kvstore.run(report)),
        ("engine", None if args.no_engine else lambda: engine_ab(report, args.engine_ab)),
    ):
        if section is None or name not in args.only:
            continue
        t = time.perf_counter()
        try:
            results[name] = section()
        except Exception as e:  # a section that breaks must not hide the others' results
            import traceback

            traceback.print_exc()
            report.check(name, "section ran", False, f"{type(e).__name__}: {e}")
        print(f"  ({name}: {time.perf_counter() - t:.1f} s)", flush=True)
        save(args.out, report, results)  # after each section: a timeout keeps what ran
    dry = " (dry run: times mean nothing)" if DRY else ""
    print(f"total {time.perf_counter() - t0:.1f} s{dry}")
    print_table(report)
    return 1 if report.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
