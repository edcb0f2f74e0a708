"""Our engine against vLLM's CPU build, side by side on one CPU, interleaved run by run.

    python benchmarks/cpu_peer.py --model teaching --vllm-python /work/venv-vllm/bin/python
    python benchmarks/cpu_peer.py --model random26m --vllm-python /work/venv-vllm/bin/python
    python benchmarks/cpu_peer.py --model teaching --workload text --engines ours

The workload (issue 29): ``random.seed(0)``, 128 requests, prompts of ``randint(20, 200)`` random
token ids in ``[0, vocab)``, then ``max_tokens = randint(20, 200)`` each (all prompts drawn first,
as bench.py does), greedy, ``ignore_eos``, float32, KV block size 32, eager. ``--workload text``:
the teaching corpus's own lines, tokenized and cut to the same lengths. Both engines get the same
token ids. Each engine warms up once, then ``--runs`` timed runs alternate between the two
(ours, vLLM, vLLM, ours, ...: drift hits both alike), the prefix cache reset before each; the
median is reported. The fraction of requests whose greedy tokens agree between the engines is
printed as a check that both computed the same thing.

``--model``: ``teaching`` (the shipped teaching model, 0.7M parameters), ``random26m`` (a random
Qwen3 of 26M parameters: 8 layers, hidden 512, 8 heads / 4 KV heads of 64, vocab 1,280, with the
teaching model's tokenizer; built once into the temp dir) or a checkpoint directory.

vLLM runs in a subprocess (``--vllm-python``; default: this interpreter when ``vllm`` imports
here) that serves runs over stdin/stdout, so its process never competes with ours for the cores
while one of us is timed. It gets ``VLLM_CPU_KVCACHE_SPACE=1`` (GiB) and block size 32 (vLLM's
CPU attention needs a multiple of 32). The last line is machine-readable::

    cpu_peer: model=teaching workload=random ours_tok_s=... vllm_tok_s=... ratio=...
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BLOCK_SIZE = 32
RANDOM_26M = dict(  # 25.8M weights + 0.7M untied LM head
    hidden_size=512,
    num_hidden_layers=8,
    num_attention_heads=8,
    num_key_value_heads=4,
    head_dim=64,
    intermediate_size=1536,
    vocab_size=1280,
    tie_word_embeddings=False,
    rope_theta=10000.0,
    max_position_embeddings=1024,
    rms_norm_eps=1e-6,
)
MARK = "@@cpu_peer "  # the vLLM server's reply lines start with this (its logs go elsewhere)


def cpu_seconds(tree: bool) -> float:
    """CPU time of this process (and, with ``tree``, of its children: vLLM's engine processes).
    Unlike wall time it hardly moves with the machine's load."""
    import psutil

    me = psutil.Process()
    procs = [me, *me.children(recursive=True)] if tree else [me]
    return sum(sum(p.cpu_times()[:2]) for p in procs)


# ---- the models and the workload -----------------------------------------------------------------
def model_path(name: str) -> str:
    if name == "teaching":
        from nanovllm.teaching import teaching_model_path

        return str(teaching_model_path())
    if name == "random26m":
        return str(random_26m_path())
    return name


def random_26m_path() -> Path:
    """The 26M random Qwen3, float32, with the teaching model's word-level tokenizer (vocab 1,280),
    so both engines detokenize every id."""
    import shutil

    from nanovllm.testing.random_model import make_random_model

    path = Path(tempfile.gettempdir()) / "nanovllm-random-qwen3-26m"
    if not (path / "model.safetensors").exists():
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        make_random_model(tmp, RANDOM_26M, dtype="float32")
        teaching = Path(model_path("teaching"))
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(teaching / name, tmp / name)
        tmp.rename(path)
    return path


def workload(kind: str, vocab: int, path: str, n: int = 128) -> tuple[list[list[int]], list[int]]:
    """(prompts as token ids, max_tokens) of the issue's workload."""
    random.seed(0)
    lens = [random.randint(20, 200) for _ in range(n)]
    if kind == "random":
        prompts = [[random.randint(0, vocab - 1) for _ in range(k)] for k in lens]
    else:
        prompts = _text_prompts(lens, path)
    max_tokens = [random.randint(20, 200) for _ in range(n)]
    return prompts, max_tokens


def _text_prompts(lens: list[int], path: str) -> list[list[int]]:
    """The teaching corpus's lines, tokenized and joined, cut to each length."""
    from transformers import AutoTokenizer

    from nanovllm.teaching.corpus import corpus_lines

    tok = AutoTokenizer.from_pretrained(path)
    lines = iter(corpus_lines(50_000, seed=1))
    prompts = []
    for k in lens:
        ids: list[int] = []
        while len(ids) < k:
            ids += tok.encode(next(lines) + " ")
        prompts.append(ids[:k])
    return prompts


# ---- our engine, in this process -----------------------------------------------------------------
class Ours:
    name = "ours"

    def __init__(self, path: str, prompts, max_tokens, cpu_threads: int | None = None):
        from nanovllm import LLM, SamplingParams

        extra = {} if cpu_threads is None else {"cpu_threads": cpu_threads}  # older code: none
        self.llm = LLM(
            path, kvcache_block_size=BLOCK_SIZE, enforce_eager=True, dtype="float32", **extra
        )
        self.prompts = prompts
        self.params = [
            SamplingParams(temperature=0, max_tokens=m, ignore_eos=True) for m in max_tokens
        ]
        runner = self.llm.executor
        self.describe = (
            f"attention={runner.backend_name} threads={getattr(runner, 'cpu_threads', None)} "
            f"max_num_seqs={self.llm.config.max_num_seqs} "
            f"max_num_batched_tokens={self.llm.config.max_num_batched_tokens} "
            f"kv_blocks={self.llm.config.num_kvcache_blocks}"
        )

    def run(self, count: int | None = None) -> dict:
        import torch

        self.llm.reset_prefix_cache()
        prompts, params = self.prompts[:count], self.params[:count]
        t0, c0 = time.perf_counter(), time.process_time()
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        tokens = [o.outputs[0].token_ids for o in outs]
        return {
            "time_s": elapsed,
            "cpu_s": cpu,
            "tokens": tokens,
            "threads": torch.get_num_threads(),
        }

    def close(self) -> None:
        self.llm.close()


# ---- vLLM, in a subprocess -----------------------------------------------------------------------
class Peer:
    """Our side of the vLLM server (``serve_vllm``, run by ``python cpu_peer.py --serve-vllm``)."""

    name = "vllm"

    def __init__(self, python: str, path: str, prompts, max_tokens, log: Path):
        env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
        env.pop("PYTHONPATH", None)  # vLLM's venv has its own packages; we need none of ours
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [python, "-u", os.path.abspath(__file__), "--serve-vllm", path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            text=True,
        )
        self.describe = self._call({"prompts": prompts, "max_tokens": max_tokens})["describe"]

    def _call(self, msg: dict) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if not line.startswith(MARK):
                self.log.write(line)  # vLLM logs to stdout
                continue
            reply = json.loads(line[len(MARK) :])
            if "error" in reply:
                raise RuntimeError(f"vLLM server: {reply['error']} (log: {self.log.name})")
            return reply
        raise RuntimeError(f"the vLLM server exited (rc={self.proc.wait()}); see {self.log.name}")

    def run(self, count: int | None = None) -> dict:
        return self._call({"run": count})

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=120)
        self.log.close()


def serve_vllm(path: str) -> None:
    """In vLLM's venv: load the model, take the workload, then answer each run request."""
    import torch
    from vllm import LLM, SamplingParams

    def reply(obj: dict) -> None:
        print(MARK + json.dumps(obj), flush=True)

    setup = json.loads(sys.stdin.readline())
    llm = LLM(
        model=path,
        dtype="float32",
        block_size=BLOCK_SIZE,
        enforce_eager=True,
        seed=0,
        max_model_len=max(len(p) + m for p, m in zip(setup["prompts"], setup["max_tokens"])),
    )
    prompts = [{"prompt_token_ids": p} for p in setup["prompts"]]
    params = [
        SamplingParams(temperature=0, max_tokens=m, ignore_eos=True) for m in setup["max_tokens"]
    ]
    sched = llm.llm_engine.vllm_config.scheduler_config
    reply(
        {
            "describe": f"vllm {__import__('vllm').__version__} max_num_seqs={sched.max_num_seqs} "
            f"max_num_batched_tokens={sched.max_num_batched_tokens}"
        }
    )
    for line in sys.stdin:
        count = json.loads(line)["run"]
        try:
            llm.reset_prefix_cache()
            t0, c0 = time.perf_counter(), cpu_seconds(tree=True)
            outs = llm.generate(prompts[:count], params[:count], use_tqdm=False)
            elapsed, cpu = time.perf_counter() - t0, cpu_seconds(tree=True) - c0
        except Exception as e:  # report it; the parent raises
            reply({"error": repr(e)})
            continue
        tokens = [list(o.outputs[0].token_ids) for o in outs]
        reply(
            {"time_s": elapsed, "cpu_s": cpu, "tokens": tokens, "threads": torch.get_num_threads()}
        )


# ---- the comparison ------------------------------------------------------------------------------
def vllm_python(arg: str | None) -> str | None:
    if arg:
        return arg
    import importlib.util

    return sys.executable if importlib.util.find_spec("vllm") else None


def timed_runs(engines: list, runs: int, warmup: int) -> dict[str, list[dict]]:
    """Each engine warms up on the first ``warmup`` requests; then ``runs`` rounds, the order
    reversed every other round."""
    for e in engines:
        e.run(warmup)
    results: dict[str, list[dict]] = {e.name: [] for e in engines}
    for r in range(runs):
        for e in engines if r % 2 == 0 else engines[::-1]:
            out = e.run()
            out["tok"] = sum(map(len, out["tokens"]))
            out["load"] = os.getloadavg()[0]
            results[e.name].append(out)
            print(
                f"  run {r + 1} {e.name:<5} {out['tok'] / out['time_s']:8.1f} tok/s "
                f"({out['time_s']:.1f} s, CPU {out['cpu_s']:.1f} s, load {out['load']:.2f})",
                flush=True,
            )
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="teaching", help="teaching | random26m | a checkpoint dir")
    ap.add_argument("--workload", choices=("random", "text"), default="random")
    ap.add_argument("--requests", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=8, help="requests of the warm-up run")
    ap.add_argument("--engines", choices=("both", "ours", "vllm"), default="both")
    ap.add_argument("--vllm-python", default=None, help="a python whose env has vllm-cpu")
    ap.add_argument("--cpu-threads", type=int, default=None, help="ours: Config.cpu_threads")
    ap.add_argument("--serve-vllm", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_vllm:
        return serve_vllm(args.serve_vllm)
    path = model_path(args.model)
    vocab = json.loads((Path(path) / "config.json").read_text())["vocab_size"]
    prompts, max_tokens = workload(args.workload, vocab, path, args.requests)
    print(
        f"model {args.model} ({path}), workload {args.workload}: {len(prompts)} requests, "
        f"{sum(map(len, prompts))} prompt tokens, {sum(max_tokens)} output tokens; "
        f"load {os.getloadavg()[0]:.2f}"
    )
    engines = []
    if args.engines in ("both", "ours"):
        engines.append(Ours(path, prompts, max_tokens, args.cpu_threads))
    if args.engines in ("both", "vllm"):
        python = vllm_python(args.vllm_python)
        if python is None:
            sys.exit("vllm is not importable here: pass --vllm-python /path/to/venv/bin/python")
        log = Path(tempfile.gettempdir()) / f"cpu_peer_vllm_{os.getpid()}.log"
        engines.append(Peer(python, path, prompts, max_tokens, log))
    try:
        for e in engines:
            print(f"{e.name}: {e.describe}")
        results = timed_runs(engines, args.runs, args.warmup)
    finally:
        for e in engines:
            e.close()
    report(args, results)


def report(args, results: dict[str, list[dict]]) -> None:
    tok_s = {
        name: statistics.median(r["tok"] / r["time_s"] for r in runs)
        for name, runs in results.items()
    }
    print(f"\n{'engine':<6} {'median tok/s':>12} {'median s':>9} {'CPU s':>7}  runs (tok/s)")
    for name, runs in results.items():
        med_s = statistics.median(r["time_s"] for r in runs)
        cpu_s = statistics.median(r["cpu_s"] for r in runs)
        per = ", ".join(f"{r['tok'] / r['time_s']:.1f}" for r in runs)
        print(f"{name:<6} {tok_s[name]:12.1f} {med_s:9.1f} {cpu_s:7.1f}  [{per}]")
    line = f"cpu_peer: model={args.model} workload={args.workload} runs={args.runs}"
    line += "".join(f" {name}_tok_s={v:.1f}" for name, v in tok_s.items())
    for name, runs in results.items():
        line += f" {name}_cpu_s={statistics.median(r['cpu_s'] for r in runs):.2f}"
    if len(results) == 2:
        ours, peer = results["ours"][-1]["tokens"], results["vllm"][-1]["tokens"]
        same = sum(a == b for a, b in zip(ours, peer)) / len(ours)
        ratio = tok_s["ours"] / tok_s["vllm"]
        print(f"ours / vLLM = {ratio:.2f}x; greedy outputs identical for {same:.0%} of requests")
        line += f" ratio={ratio:.3f} same_outputs={same:.3f}"
    loads = [r["load"] for runs in results.values() for r in runs]
    line += f" load_min={min(loads):.2f} load_max={max(loads):.2f}"
    print(line)


if __name__ == "__main__":
    main()
