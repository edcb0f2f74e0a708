"""What the workbench costs: engine throughput bare vs with the workbench attached.

    python benchmarks/workbench_overhead.py                      # 64 requests x 64 tokens, 10 reps
    python benchmarks/workbench_overhead.py --blocks 512 --reps 5
    python benchmarks/workbench_overhead.py --workload bench --engine-defaults --reps 3 \
        --config kvcache_block_size=256 --config num_kvcache_blocks=1536   # BENCH.md's, on a GPU

Both engines use the same config (the workbench's teaching defaults unless overridden) and run the
same fixed workload through ``llm.generate``; repetitions alternate which one goes first, and each
repetition uses fresh prompts (no prefix-cache hits carried over). ``--workload bench`` is
BENCH.md's (256 requests, prompts of 100..1024 random ids, 100..1024 output tokens, temperature
0.6); its prompts repeat, so each run starts on an emptied prefix cache. ``--engine-defaults``
starts from the engine's own config instead of the workbench's teaching cache; ``--config k=v``
sets any engine field (two engines share the device: on a GPU give both a fixed
``num_kvcache_blocks``). The attached engine has every
view subscribed and throttled exactly as in a notebook (metrics every step, a snapshot every step
while it costs under 1% of one, redraws at most ~10/s and ~2% of the time). Without a kernel,
widget messages are serialized but not sent.
Prints generated tok/s per run (by wall time, and by this process's CPU time, which other load on
a shared machine disturbs less), the medians and their ratios (attached / bare).
"""

from __future__ import annotations

import argparse
import statistics
import time

from nanovllm import LLM, SamplingParams


def prompts(rep: int, n: int) -> list[str]:
    return [
        f"Run {rep} request {i}: how many tokens fit in {i + 1} blocks of 16?" for i in range(n)
    ]


def bench_workload():
    """BENCH.md's workload, from benchmarks/bench.py (prompts, per-request SamplingParams)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("bench.py")
    module_spec = importlib.util.spec_from_file_location("bench", path)
    bench = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(bench)
    return bench.workload()


def parse_config(items: list[str]) -> dict:
    """``["k=v", ...]`` -> {k: v}, values read as Python literals where they are one."""
    import ast

    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def timed_generate(llm: LLM, batch: list, params) -> tuple[float, float]:
    """(tok/s by wall time, tok/s by this process's CPU time), on an emptied prefix cache."""
    llm.reset_prefix_cache()
    t0, c0 = time.perf_counter(), time.process_time()
    outs = llm.generate(batch, params, use_tqdm=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    tokens = sum(len(o["token_ids"]) for o in outs)
    return tokens / wall, tokens / cpu


def main() -> None:
    from widgets import TEACHING_DEFAULTS, Workbench
    from widgets._singleton import default_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--blocks", type=int, default=TEACHING_DEFAULTS["num_kvcache_blocks"])
    ap.add_argument("--model", default=None, help="default: $NANOVLLM_MODEL or the tiny model")
    ap.add_argument("--workload", choices=("small", "bench"), default="small")
    ap.add_argument("--engine-defaults", action="store_true", help="not the teaching cache")
    ap.add_argument("--config", action="append", default=[], help="engine field k=v (repeat)")
    ap.add_argument(
        "--attached-only",
        action="store_true",
        help="no bare engine (a cache as large as the device: per-step and per-redraw cost only)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: steadier figures on a shared machine; 0: torch's default)",
    )
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    model = args.model or default_model()
    config = {} if args.engine_defaults else dict(TEACHING_DEFAULTS, num_kvcache_blocks=args.blocks)
    config.update(parse_config(args.config))
    if args.workload == "bench":
        fixed, params = bench_workload()
        args.requests, total = len(fixed), sum(p.max_tokens for p in params)
    else:
        params = SamplingParams(temperature=0, max_tokens=args.tokens, ignore_eos=True)
        total = args.requests * args.tokens
    bare = None if args.attached_only else LLM(model, **config)
    t = time.perf_counter()
    wb = Workbench(model, config)
    runner = getattr(wb.llm.executor, "model", None) and wb.llm.executor
    print(
        f"workbench up in {time.perf_counter() - t:.1f} s ({getattr(runner, 'startup', {})}); "
        f"KV blocks {wb.llm.config.num_kvcache_blocks}; "
        f"memory {getattr(runner, 'memory_report', None)}"
    )
    # warm up (first-call allocations, kernel selection)
    for llm in (bare, wb.llm) if bare else (wb.llm,):
        llm.generate(prompts(-1, 8), SamplingParams(temperature=0, max_tokens=8), use_tqdm=False)

    print(
        f"model={model}\nconfig={config}\n"
        f"workload: {args.workload}, {args.requests} requests, {total} output tokens, "
        f"{args.reps} alternating repetitions"
    )
    results: dict[str, list[tuple[float, float]]] = {"workbench": []}
    if bare:
        results["bare"] = []
    redraws0, steps0, observer0 = wb.redraws, wb.history.last_step, wb.observer_time
    cpu = {"bare": 0.0, "workbench": 0.0}
    for rep in range(args.reps):
        order = [("bare", bare), ("workbench", wb.llm)] if bare else [("workbench", wb.llm)]
        for name, llm in order if rep % 2 == 0 else order[::-1]:
            batch = fixed if args.workload == "bench" else prompts(rep, args.requests)
            results[name].append(timed_generate(llm, batch, params))
            wall, per_cpu = results[name][-1]
            cpu[name] += total / per_cpu
            print(f"  rep {rep} {name:9s} {wall:8.1f} tok/s wall   {per_cpu:8.1f} tok/s CPU")
    med = {
        name: [statistics.median(r[k] for r in runs) for k in (0, 1)]
        for name, runs in results.items()
    }
    for name in results:
        print(f"median {name:9s} {med[name][0]:8.1f} tok/s wall   {med[name][1]:8.1f} tok/s CPU")
    for k, what in enumerate(("wall", "CPU") if bare else ()):
        ratio = med["workbench"][k] / med["bare"][k]
        print(
            f"ratio workbench/bare ({what} time) = {ratio:.3f}  "
            f"(overhead {100 * (1 - ratio):+.1f}%)"
        )
    observer = wb.observer_time - observer0
    print(
        f"workbench: {wb.redraws - redraws0} redraws over {wb.history.last_step - steps0} steps "
        f"(about {wb.throttle.cost * 1e3:.1f} ms of CPU each); its step observer took "
        f"{observer * 1e3:.0f} ms = {100 * observer / cpu['workbench']:.1f}% "
        "of the attached runs' CPU time"
    )
    steps = wb.history.last_step - steps0
    print(
        f"per step: {1e3 * cpu['workbench'] / max(steps, 1):.2f} ms of CPU in the attached runs, "
        f"of which the observer {1e3 * observer / max(steps, 1):.2f} ms"
    )
    wb.close()
    if bare:
        bare.close()


if __name__ == "__main__":
    main()
