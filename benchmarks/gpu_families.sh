#!/usr/bin/env bash
# One device call for the model families: the Triton MoE kernel and per-family GPU tests, the
# fused-MoE kernel alone, then bench.py on Llama-3.2-1B and Qwen3-30B-A3B shapes. Logs in $OUT.
# Each step has its own time limit so the whole call stays inside one short device lease.
set -uo pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TOKENIZERS_PARALLELISM=false PYTHONPATH=$PWD:$PWD/benchmarks
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
timeout "${T_TESTS:-150}" python3 -m pytest -q -p no:cacheprovider -o addopts="" \
    tests/layers/test_moe_kernels.py tests/models/test_gpu_families.py 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
timeout "${T_KERNEL:-30}" python3 benchmarks/moe_kernel_bench.py 2>&1 | tee "$OUT/moe_kernel.log"
timeout "${T_LLAMA:-90}" python3 benchmarks/bench.py --arch llama-3.2-1b --no-recorder-run 2>&1 \
    | tee "$OUT/bench_llama.log" | grep -v "^\s*$"
timeout "${T_MOE:-200}" python3 benchmarks/bench.py --arch qwen3-30b-a3b --no-recorder-run 2>&1 \
    | tee "$OUT/bench_moe.log"
