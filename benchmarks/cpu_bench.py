"""CPU figures: scheduler + block manager cost per decode step, tiny-model throughput, and the cost
of observing (Recorder attached vs not). Figures are printed, never asserted.

    python benchmarks/cpu_bench.py [--model PATH] [--requests 64] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from nanovllm import LLM, SamplingParams
from nanovllm.engine.core.batch import SamplerOutput
from nanovllm.engine.core.block_manager import BlockManager
from nanovllm.engine.core.scheduler import Scheduler
from nanovllm.engine.core.sequence import Sequence
from nanovllm.engine.observe.recorder import Recorder


def scheduler_step_cost(num_seqs: int = 256, steps: int = 300, block_size: int = 256) -> float:
    """Seconds of schedule() + advance() + postprocess() per decode step, ``num_seqs`` running."""
    rng = random.Random(0)
    bm = BlockManager(num_seqs * 8, block_size)
    sched = Scheduler(bm, max_num_seqs=num_seqs, max_num_batched_tokens=16384, max_model_len=4096)
    for i in range(num_seqs):
        prompt = [rng.randrange(10000) for _ in range(rng.randint(100, 1024))]
        sched.add(Sequence(i, prompt, SamplingParams(max_tokens=3000, ignore_eos=True)))
    while any(s.num_completion_tokens == 0 for s in sched.running) or sched.waiting:  # prefill
        batch = sched.schedule()
        sched.advance(batch)
        sched.postprocess(batch, SamplerOutput.of_tokens([1] * len(batch.sample_rows)))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        batch = sched.schedule()
        sched.advance(batch)
        sched.postprocess(batch, SamplerOutput.of_tokens([1] * len(batch.sample_rows)))
        times.append(time.perf_counter() - t0)
    assert len(batch) == num_seqs and all(batch.is_decode)
    return statistics.median(times)


def throughput(llm: LLM, prompts, params) -> float:
    t0 = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    return sum(len(o["token_ids"]) for o in outs) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cost = scheduler_step_cost()
    print(
        f"scheduler+block manager, decode step at 256 running: {cost * 1e3:.3f} ms "
        f"({1 / cost:,.0f} steps/s)"
    )
    if args.model is None:
        from nanovllm.testing import tiny_model_path

        args.model = str(tiny_model_path())
    rng = random.Random(0)
    prompts = [
        [rng.randrange(3, 448) for _ in range(rng.randint(16, 128))] for _ in range(args.requests)
    ]
    params = SamplingParams(temperature=0.6, max_tokens=args.max_tokens, ignore_eos=True)
    with LLM(args.model, kvcache_block_size=16) as llm:
        throughput(llm, prompts[:4], params)  # warm-up
        bare, recorded = [], []
        for _ in range(args.repeats):  # alternate, so drift hits both alike
            bare.append(throughput(llm, prompts, params))
            rec = Recorder().attach(llm)
            recorded.append(throughput(llm, prompts, params))
            rec.detach()
    b, r = statistics.median(bare), statistics.median(recorded)
    print(
        f"tiny model on CPU: {b:,.0f} tok/s bare, {r:,.0f} tok/s with a Recorder "
        f"(ratio {r / b:.3f}; runs bare {[round(x) for x in bare]}, "
        f"recorded {[round(x) for x in recorded]})"
    )
    print(
        f"bench: engine=nanovllm device=cpu sched_step_ms={cost * 1e3:.3f} tok_s={b:.0f} "
        f"tok_s_recorder={r:.0f}"
    )


if __name__ == "__main__":
    main()
