"""Where a decode step's time goes at batch 256 (GPU): StepTiming medians and the top CUDA kernels.

python benchmarks/profile_decode.py [--model PATH] [--eager]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

import torch
from torch.profiler import ProfilerActivity, profile

from nanovllm import LLM


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--eager", action="store_true")
    args = ap.parse_args()
    path = args.model or os.path.join(tempfile.gettempdir(), "nanovllm-random-qwen3-0.6b")
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        from nanovllm.testing.random_model import QWEN3_0_6B, make_random_model

        make_random_model(path, QWEN3_0_6B, device="cuda")
    from bench import workload

    prompts, params = workload()
    with LLM(path, max_model_len=4096, enforce_eager=args.eager) as llm:
        for p, sp in zip(prompts, params):
            llm.add_request(p, sp)
        records = [llm.step() for _ in range(40)]
        decode = [r for r in records if r.phase == "decode"]
        med = {
            k: statistics.median(getattr(r.timing, k) for r in decode) * 1e3
            for k in ("schedule", "prepare", "forward", "sample", "postprocess", "total")
        }
        print(
            f"decode steps at batch {len(decode[-1].seq_ids)}: "
            + ", ".join(f"{k}={v:.2f} ms" for k, v in med.items())
        )
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                llm.step()
            torch.cuda.synchronize()
        print(
            prof.key_averages().table(
                sort_by="cuda_time_total", row_limit=22, max_name_column_width=60
            )
        )


if __name__ == "__main__":
    main()
