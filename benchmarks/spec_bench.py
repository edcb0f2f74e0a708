"""Speculative decoding (n-gram drafts): steps and wall time per generated token, with and without.

    python benchmarks/spec_bench.py                          # CPU (device auto), k = 3
    python benchmarks/spec_bench.py --device cuda --k 5      # the same on a GPU
    python benchmarks/spec_bench.py --model /path/to/ckpt --max-tokens 256

Workloads (greedy, so the outputs with and without speculation must be identical; the script
checks it): the teaching model's counting prompts (digits and words: each number is new, so
little to look up), its fact questions (the answer repeats the question's words), the week and
the times tables (they repeat: what prompt lookup is for), and random token ids (nothing to look
up: where drafting should not help), each at batch 1 and batch 16. At batch 16 a step serves 16
requests, so steps per token fall with the batch; the acceptance figures say what each
drafting decode gained. One warm-up run per engine; the wall time is the
median of ``--reps`` runs of ``llm.generate``, alternating which engine goes first. Prints one
table row per (workload, batch) and a machine-readable ``spec_bench:`` line per row.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from nanovllm import LLM, SamplingParams
from nanovllm.teaching import teaching_model_path
from nanovllm.teaching.facts import FACTS

WORDS = "one two three four five six seven eight nine ten eleven twelve".split()


def counting(i: int) -> str:
    if i % 2:
        start = 10 + 13 * i
        return " ".join(str(n) for n in range(start, start + 5))
    return " ".join(WORDS[i % 4 : i % 4 + 4])


def fact(i: int) -> str:
    return FACTS[i % len(FACTS)].questions[0]


DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()


def week(i: int) -> str:
    return " ".join(DAYS[(i + j) % 7] for j in range(4))


def times(i: int) -> str:
    n = 2 + i % 10
    return f"{n} x 2 = {2 * n}, {n} x 3 = {3 * n},"


def random_ids(i: int, vocab: int) -> list[int]:
    rng = random.Random(i)
    return [rng.randrange(3, vocab) for _ in range(24)]


def workloads(vocab: int) -> dict:
    return {
        "counting": counting,
        "facts": fact,
        "week": week,
        "times": times,
        "random": lambda i: random_ids(i, vocab),
    }


def run(llm: LLM, prompts: list, params: SamplingParams) -> tuple[float, int, int, list]:
    """(wall seconds, steps that computed something, generated tokens, outputs)."""
    steps = []
    unsubscribe = llm.subscribe(lambda r: steps.append(r) if r.seq_ids else None)
    llm.reset_prefix_cache()
    try:
        t0 = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        wall = time.perf_counter() - t0
    finally:
        unsubscribe()
    tokens = [o["token_ids"] for o in outs]
    return wall, len(steps), sum(map(len, tokens)), tokens


def bench_row(engines: dict, prompts: list, params: SamplingParams, reps: int) -> dict:
    times = {name: [] for name in engines}
    result = {}
    for rep in range(reps):
        order = list(engines) if rep % 2 == 0 else list(engines)[::-1]
        for name in order:
            llm = engines[name]
            llm.reset_metrics()
            wall, steps, generated, tokens = run(llm, prompts, params)
            times[name].append(wall)
            metrics = llm.get_metrics()
            result[name] = dict(steps=steps, generated=generated, tokens=tokens, m=metrics)
    assert result["spec"]["tokens"] == result["plain"]["tokens"], "greedy outputs differ"
    for name in engines:
        result[name]["wall"] = statistics.median(times[name])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="checkpoint directory (default: teaching)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--k", type=int, default=3, help="num_speculative_tokens")
    ap.add_argument("--lookup-max", type=int, default=3, help="prompt_lookup_max")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batches", default="1,16")
    args = ap.parse_args()
    model = args.model or str(teaching_model_path())
    spec = {
        "method": "ngram",
        "num_speculative_tokens": args.k,
        "prompt_lookup_max": args.lookup_max,
    }
    engines = {
        "plain": LLM(model, device=args.device),
        "spec": LLM(model, device=args.device, speculative_config=spec),
    }
    vocab = engines["plain"].config.spec.vocab_size
    params = SamplingParams(temperature=0, max_tokens=args.max_tokens)
    warm = [counting(0), fact(0)]
    for llm in engines.values():
        llm.generate(warm, params, use_tqdm=False)
    print(
        f"model {model}, device {engines['plain'].config.device}, k {args.k}, "
        f"max_tokens {args.max_tokens}, median of {args.reps} runs"
    )
    print(
        f"{'workload':>9} {'batch':>5} | {'steps/tok':>9} {'ms/tok':>7} | "
        f"{'steps/tok':>9} {'ms/tok':>7} {'accept':>6} {'len':>5} | {'steps':>6} {'time':>6}"
    )
    print(
        f"{'':>9} {'':>5} | {'without speculation':>17} | {'with speculation':>31} | "
        f"{'saved':>6} {'ratio':>6}"
    )
    for name, make in workloads(vocab).items():
        for batch in map(int, args.batches.split(",")):
            prompts = [make(i) for i in range(batch)]
            r = bench_row(engines, prompts, params, args.reps)
            p, s = r["plain"], r["spec"]
            n = p["generated"]
            rate = s["m"]["spec_decode_acceptance_rate"]
            length = s["m"]["spec_decode_mean_acceptance_length"]
            print(
                f"{name:>9} {batch:>5} | {p['steps'] / n:>9.3f} {p['wall'] / n * 1e3:>7.2f} | "
                f"{s['steps'] / n:>9.3f} {s['wall'] / n * 1e3:>7.2f} {rate:>6.2f} {length:>5.2f} | "
                f"{1 - s['steps'] / p['steps']:>6.0%} {s['wall'] / p['wall']:>6.2f}"
            )
            print(
                f"spec_bench: workload={name} batch={batch} tokens={n} k={args.k} "
                f"steps_plain={p['steps']} steps_spec={s['steps']} "
                f"time_plain_s={p['wall']:.4f} time_spec_s={s['wall']:.4f} "
                f"acceptance_rate={rate:.3f} mean_acceptance_length={length:.2f}"
            )
    for llm in engines.values():
        llm.close()


if __name__ == "__main__":
    main()
