"""Where an engine's start goes: one ``LLM(...)`` as bench.py starts it, timed by a sampling
profiler (a thread that reads the main thread's stack every few milliseconds), plus the time of
every Triton compile. Meant for the GPU (on CPU it runs, to try it); prints three tables:

* by our code: the deepest ``nanovllm`` frame of each sample (what of ours was running), and
* by phase: samples whose stack holds a known expensive library call (imports, Dynamo trace,
  Inductor compile, Triton compile, CUDA-graph capture, safetensors, tokenizer), and
* imports, by the outermost module being imported and the frame of ours that imported it.

Run it twice in two processes to see a cold start (empty Triton / Inductor caches) and a warm one:

    python benchmarks/startup_profile.py --model /tmp/qwen3-0.6b   # cold the first time
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time

_PHASES = {  # a frame (file fragment, function) on the stack -> the phase it stands for
    "import": [("<frozen importlib._bootstrap>", "")],
    "inductor compile": [
        ("torch/_inductor/", "compile_fx"),
        ("torch/_inductor/", "fx_codegen_and_compile"),
    ],
    "dynamo trace": [("torch/_dynamo/convert_frame.py", "_compile")],
    "triton compile": [("triton/compiler/compiler.py", "compile")],
    "triton autotune / benchmark": [
        ("triton/runtime/autotuner.py", "run"),
        ("triton/testing.py", "do_bench"),
    ],
    "cuda graph capture": [
        ("torch/cuda/graphs.py", "__exit__"),
        ("torch/cuda/graphs.py", "__enter__"),
    ],
    "synchronize": [("torch/cuda/__init__.py", "synchronize")],
    "safetensors": [("safetensors", "")],
    "tokenizer": [("transformers/tokenization", ""), ("tokenizers", "")],
}


class StackSampler:
    def __init__(self, thread_id: int, interval: float = 0.005):
        self.thread_id, self.interval = thread_id, interval
        # (seconds since the previous sample, stack): a thread holding the GIL in C code delays the
        # next sample, so each stack is weighted by the time it stands for
        self.samples: list[tuple[float, list[tuple[str, int, str]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(self.interval):
            now = time.perf_counter()
            frame = sys._current_frames().get(self.thread_id)
            stack = []
            while frame is not None:
                code = frame.f_code
                name = code.co_name
                if name == "_find_and_load":  # an import: keep the module's name
                    name = f"import {frame.f_locals.get('name')}"
                stack.append((code.co_filename, frame.f_lineno, name))
                frame = frame.f_back
            self.samples.append((now - last, stack[::-1]))  # outermost first
            last = now

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _phase(stack) -> str:
    for name, marks in _PHASES.items():  # the first listed phase on the stack wins
        for file_part, func in marks:
            if any(file_part in f and (not func or fn == func) for f, _, fn in stack):
                return name
    return "other"


def _ours(stack) -> str:
    mine = [(f, ln, fn) for f, ln, fn in stack if "/nanovllm/" in f]
    if not mine:
        return "(outside nanovllm)"
    f, ln, fn = mine[-1]
    return f"{f.split('/nanovllm/')[-1]}:{ln} {fn}"


def _first_import(stack) -> str:
    """The outermost module being imported, and the frame of ours that imported it."""
    for i, (_, _, fn) in enumerate(stack):
        if fn.startswith("import "):
            return f"{fn[7:]}  (from {_ours(stack[:i])})"
    return ""


def _table(title: str, seconds: collections.Counter, top: int) -> None:
    print(f"\n{title}")
    for key, s in seconds.most_common(top):
        print(f"  {s:7.2f} s  {key}")


def patch_triton_compile(log: list) -> None:
    try:
        import triton.compiler.compiler as tc
    except ImportError:  # a CPU machine without triton
        return

    original = tc.compile

    def timed(src, *args, **kwargs):
        t = time.perf_counter()
        try:
            return original(src, *args, **kwargs)
        finally:
            name = getattr(src, "name", None) or getattr(getattr(src, "fn", None), "__name__", "?")
            log.append((name, time.perf_counter() - t))

    # JITFunction takes ``compile`` from the package (``from ..compiler import compile``) when it
    # binds a kernel's first launch: patch that name too
    import triton.compiler

    tc.compile = triton.compiler.compile = timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--max-model-len", type=int, default=4096)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()

    t_all = time.perf_counter()
    compiles: list[tuple[str, float]] = []
    with StackSampler(threading.get_ident()) as sampler:
        import torch

        from nanovllm import LLM

        device = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: only to try the script
        if device == "cuda":
            torch.cuda.init()
        t_import = time.perf_counter() - t_all
        patch_triton_compile(compiles)
        t = time.perf_counter()
        llm = LLM(args.model, max_model_len=args.max_model_len, device=device)
        up = time.perf_counter() - t
    print(f"imports and CUDA init {t_import:.1f} s; LLM(...) up in {up:.1f} s")
    print(f"startup parts: {getattr(llm.executor, 'startup', {})}")
    phases, ours, imports = collections.Counter(), collections.Counter(), collections.Counter()
    for dt, stack in sampler.samples:
        phases[_phase(stack)] += dt
        ours[_ours(stack)] += dt
        if module := _first_import(stack):
            imports[module] += dt
    print(f"{len(sampler.samples)} samples, {sum(dt for dt, _ in sampler.samples):.1f} s")
    _table("by phase (seconds)", phases, args.top)
    _table("by our deepest frame (seconds)", ours, args.top)
    _table("imports, by the outermost module (seconds)", imports, args.top)
    per = collections.defaultdict(list)
    for name, s in compiles:
        per[name].append(s)
    print(f"\ntriton compiles: {len(compiles)}, {sum(s for _, s in compiles):.1f} s")
    for name, times in sorted(per.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {sum(times):6.2f} s  {len(times):3d} x  {name}")
    llm.close()


if __name__ == "__main__":
    main()
