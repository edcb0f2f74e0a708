#!/usr/bin/env bash
# One device call: the throughput benchmark, a decode profile, then the GPU tests. Logs in $OUT.
# usage: bash benchmarks/gpu_run.sh [extra bench.py args]
#   PROFILE=1  also run profile_decode.py;  TESTS=  (empty) skip the tests
# (pytest runs with -o addopts="": the device image has no nbval, which pyproject's addopts name)
set -uo pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TOKENIZERS_PARALLELISM=false PYTHONPATH=$PWD:$PWD/benchmarks
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
timeout "${BENCH_TIMEOUT:-330}" python3 benchmarks/bench.py "$@" 2>&1 | tee "$OUT/bench.log"
if [ -n "${PROFILE:-}" ]; then
  timeout "${PROFILE_TIMEOUT:-150}" python3 benchmarks/profile_decode.py 2>&1 | tee "$OUT/profile.log"
fi
if [ -n "${TESTS-1}" ]; then
  timeout "${TESTS_TIMEOUT:-240}" python3 -m pytest -q -p no:cacheprovider -o addopts="" \
    tests/engine/test_gpu.py tests/layers/test_elementwise_kernels.py \
    tests/attention/test_triton_backend.py tests/engine/test_overlap.py tests/layers/test_sampler.py \
    tests/engine/test_sampling_features.py tests/test_streaming.py 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
fi
