"""Where our CPU engine's time goes on cpu_peer.py's workload: by phase, then by operator.

    python benchmarks/cpu_profile.py --model teaching
    python benchmarks/cpu_profile.py --model random26m --op-steps 20

1. One warm-up, then the whole workload (128 requests, cpu_peer.py's) runs once, one step at a
   time (``step()``), and each phase's seconds are summed over the run, for the prefill steps
   (steps with any prefill token) and the decode steps apart:
     schedule      Scheduler.schedule()                            StepTiming.schedule
     prepare       ScheduledBatch -> StepInputs (host arrays)       StepTiming.prepare
     attention     the backend's store_kv + attend, every layer     timed around the backend
     model (rest)  the forward without attention: embeddings, projections, norms, rotary,
                   MLP, LM head                                    StepTiming.forward - attention
     sampling      Sampler.sample                                  StepTiming.sample
     postprocess   Scheduler.postprocess()                         StepTiming.postprocess
     engine        the rest of each step (records, observers)      StepTiming.total - the above
     loop          generate()'s loop around the steps              wall time - sum of totals
2. ``--op-steps`` steps from the middle of a second run go under torch.profiler; each operator's
   self CPU time per step is printed (top ``--top``).

Figures are printed, never asserted; the machine's load is printed with them.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cpu_peer import BLOCK_SIZE, model_path, workload  # noqa: E402

PHASES = ("schedule", "prepare", "attention", "model (rest)", "sampling", "postprocess", "engine")


class AttentionClock:
    """Seconds spent in the attention backend's store_kv and attend since the last ``take()``."""

    def __init__(self, backend):
        self.seconds = 0.0
        for name in ("store_kv", "attend"):
            setattr(backend, name, self._timed(getattr(backend, name)))

    def _timed(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        return wrapper

    def take(self) -> float:
        s, self.seconds = self.seconds, 0.0
        return s


def run_phases(llm, prompts, params, clock: AttentionClock) -> tuple[dict, float, dict]:
    """Run the workload to the end, one ``step()`` at a time; (phase seconds by step kind, wall
    seconds, step counts by kind)."""
    llm.reset_prefix_cache()
    for p, sp in zip(prompts, params):
        llm.add_request(p, sp)
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    steps: dict[str, int] = defaultdict(int)
    clock.take()
    t0, c0 = time.perf_counter(), time.process_time()
    while llm.has_unfinished():
        record = llm.step()
        t, attn = record.timing, clock.take()
        kind = "prefill" if record.num_prefill_tokens else "decode"
        steps[kind] += 1
        parts = {
            "schedule": t.schedule,
            "prepare": t.prepare,
            "attention": attn,
            "model (rest)": t.forward - attn,
            "sampling": t.sample,
            "postprocess": t.postprocess,
        }
        parts["engine"] = t.total - sum(parts.values())
        for name, s in parts.items():
            sums[kind][name] += s
        sums[kind]["total"] += t.total
    wall = time.perf_counter() - t0
    steps["cpu_s"] = time.process_time() - c0  # this process's CPU time: what the load hides
    for rid in list(llm.requests._requests):  # the outputs are not needed: forget them
        llm.forget(rid)
    return sums, wall, steps


def print_phases(sums, wall: float, steps, tokens: int) -> None:
    kinds = [k for k in ("prefill", "decode") if k in sums]
    print(
        f"\n{'phase':<14}"
        + "".join(f"{k + ' s':>12}" for k in kinds)
        + f"{'all s':>10}{'share':>8}"
    )
    for name in PHASES:
        row = [sums[k][name] for k in kinds]
        print(
            f"{name:<14}"
            + "".join(f"{v:12.3f}" for v in row)
            + f"{sum(row):10.3f}{sum(row) / wall:8.1%}"
        )
    loop = wall - sum(sums[k]["total"] for k in kinds)
    print(f"{'loop':<14}" + " " * 12 * len(kinds) + f"{loop:10.3f}{loop / wall:8.1%}")
    print(
        f"{'wall':<14}" + "".join(f"{steps[k]:>8} st." for k in kinds) + f"{wall:10.3f}"
        f"   {tokens / wall:.1f} tok/s; CPU time {steps['cpu_s']:.3f} s; "
        f"load {os.getloadavg()[0]:.2f}"
    )


def profile_ops(llm, prompts, params, op_steps: int, top: int) -> None:
    """Operators' self CPU time per step over ``op_steps`` steps from the middle of a run."""
    from torch.profiler import ProfilerActivity, profile

    llm.reset_prefix_cache()
    for p, sp in zip(prompts, params):
        llm.add_request(p, sp)
    for _ in range(max(1, min(params, key=lambda p: p.max_tokens).max_tokens // 2)):
        llm.step()  # into the decode phase, a third of the requests done
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(op_steps):
            llm.step()
    rows = len(llm.scheduler.running)
    while llm.has_unfinished():
        llm.step()
    for rid in list(llm.requests._requests):
        llm.forget(rid)
    ops = defaultdict(lambda: [0.0, 0])
    for evt in prof.key_averages():
        ops[evt.key][0] += evt.self_cpu_time_total / op_steps
        ops[evt.key][1] += evt.count / op_steps
    total = sum(us for us, _ in ops.values())
    print(
        f"\noperators, self CPU time per decode step (mean of {op_steps}, ~{rows} rows): "
        f"{total / 1e3:.2f} ms"
    )
    print(f"{'operator':<44}{'us':>10}{'share':>8}{'calls':>8}")
    for name, (us, calls) in sorted(ops.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"{name[:43]:<44}{us:10.1f}{us / total:8.1%}{calls:8.0f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="teaching", help="teaching | random26m | a checkpoint dir")
    ap.add_argument("--workload", choices=("random", "text"), default="random")
    ap.add_argument("--requests", type=int, default=128)
    ap.add_argument("--op-steps", type=int, default=10, help="0: no operator table")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    import json
    from pathlib import Path

    import torch

    from nanovllm import LLM, SamplingParams

    path = model_path(args.model)
    vocab = json.loads((Path(path) / "config.json").read_text())["vocab_size"]
    prompts, max_tokens = workload(args.workload, vocab, path, args.requests)
    params = [SamplingParams(temperature=0, max_tokens=m, ignore_eos=True) for m in max_tokens]
    with LLM(path, kvcache_block_size=BLOCK_SIZE, enforce_eager=True, dtype="float32") as llm:
        print(
            f"model {args.model}, {len(prompts)} requests, torch threads {torch.get_num_threads()}"
        )
        clock = AttentionClock(llm.executor.model.backend)
        llm.generate(prompts[:8], params[:8], use_tqdm=False)  # warm-up
        sums, wall, steps = run_phases(llm, prompts, params, clock)
        print_phases(sums, wall, steps, sum(max_tokens))
        if args.op_steps:
            profile_ops(llm, prompts, params, args.op_steps, args.top)


if __name__ == "__main__":
    main()
