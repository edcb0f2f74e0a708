#!/usr/bin/env bash
# A GPU session's checks in parts, one device call each (each ends inside the 10-minute call
# limit; every step has its own timeout, so a hung step costs its slot, not the call). Each part
# leaves at most eight files in $OUT (the device tool brings back eight): its logs, and all.tgz.
#
#   PART=numbers   bash benchmarks/gpu_session.sh  # new kernels' check, bench --peer 32, profile
#   PART=tests     bash benchmarks/gpu_session.sh  # the GPU tests, then spec_bench on the GPU
#   PART=teaching  bash benchmarks/gpu_session.sh  # notebooks + workbench on the teaching model
#   PART=0.6b      bash benchmarks/gpu_session.sh  # the same on a random Qwen3-0.6B, 4,381 blocks
#   PART=auto      bash benchmarks/gpu_session.sh  # on an H200: PART=h200 (bench, profile, workbench
#                                                  # at 4,381 blocks); on another card: PART=verify
#   PART=rest      bash benchmarks/gpu_session.sh  # one call: -m gpu, workbench on 0.6B, spec, notebooks
#
# The teaching and 0.6b parts need .whl (benchmarks/gpu_wheels.sh): the device image has no Jupyter stack.
set -uo pipefail
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false NCCL_NVLS_ENABLE=0
export TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/out}; LOG=/tmp/gpu_logs; mkdir -p "$OUT" "$LOG"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:$PWD/benchmarks:${PYTHONPATH:-}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$LOG/gpu.txt"
# the device's copy of the tree may carry an older .git: the caller names the commit it sent
echo "commit ${COMMIT:-$(git log -1 --format=%h 2>/dev/null) (from the copied .git)}" | tee -a "$LOG/gpu.txt"
DEADLINE=${DEADLINE:-570}  # seconds for the whole part: a step gets at most what is left of it
step() {  # step NAME SECONDS CMD...: run with a timeout, log to $LOG/NAME.log, print its time
  local name=$1 limit=$2; shift 2
  local start=$SECONDS left=$((DEADLINE - SECONDS))
  if [ "$left" -lt 20 ]; then echo "step $name: not run (deadline)" | tee -a "$LOG/steps.txt"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  timeout "$limit" "$@" > "$LOG/$name.log" 2>&1
  local rc=$?
  echo "step $name: rc=$rc in $((SECONDS - start)) s" | tee -a "$LOG/steps.txt"
  tail -4 "$LOG/$name.log"
}
MODEL=/tmp/nanovllm-random-qwen3-0.6b
random_06b() {
  python3 -c "
import sys
from nanovllm.testing.random_model import QWEN3_0_6B, make_random_model
make_random_model(sys.argv[1], QWEN3_0_6B, device='cuda')" "$MODEL"
}
PYTEST=(python3 -m pytest -v -p no:cacheprovider -o addopts="" -rs --durations=5)
NBVAL=(python3 -m pytest -v -p no:cacheprovider --durations=5)
# CPU-suite files that run on CUDA when a GPU is present (device "auto")
CUDA_FILES=(tests/engine/test_overlap.py tests/layers tests/attention
  tests/engine/test_sampling_features.py tests/test_streaming.py)

if [ "${PART:-numbers}" = auto ]; then  # the issue's H200 numbers when one came, else the re-checks
  if grep -q H200 "$LOG/gpu.txt"; then PART=h200; else PART=verify; fi
  echo "PART=auto -> $PART" | tee -a "$LOG/steps.txt"
fi
case "${PART:-numbers}" in
h200)  # the numbers, then the workbench at the bench's full cache (4,381 blocks)
  step bench 300 python3 benchmarks/bench.py --peer 32
  step profile 90 python3 benchmarks/profile_decode.py --batch 1 16 256
  random_06b > "$LOG/model.log" 2>&1
  step workbench 150 python3 benchmarks/workbench_overhead.py --model "$MODEL" --attached-only \
    --workload bench --engine-defaults --reps 2 --threads 0 --config num_kvcache_blocks=4381
  ;;
rest)  # one call for what a session most needs after the numbers, in order of importance
  step gpu_marked 180 "${PYTEST[@]}" -m gpu tests
  random_06b > "$LOG/model.log" 2>&1
  step workbench 120 python3 benchmarks/workbench_overhead.py --model "$MODEL" --attached-only \
    --workload bench --engine-defaults --reps 2 --threads 0
  step spec 60 python3 benchmarks/spec_bench.py --device cuda --reps 3
  step notebooks 150 "${NBVAL[@]}" notebooks/0[1-8]*.ipynb notebooks/10*.ipynb
  step skinny 45 python3 benchmarks/profile_decode.py --model "$MODEL" --batch 1 --skinny-gemm
  step cuda_files 240 "${PYTEST[@]}" "${CUDA_FILES[@]}"
  ;;
verify)  # the files that failed in the last call (after their fixes), then the notebooks it missed
  step cuda_files 80 "${PYTEST[@]}" tests/engine/test_overlap.py tests/test_streaming.py \
    tests/attention/test_cpu_sdpa.py tests/layers/test_skinny_plan.py
  step notebooks 150 "${NBVAL[@]}" notebooks/0[678]*.ipynb notebooks/10*.ipynb
  step families 120 "${PYTEST[@]}" -m gpu tests/models/test_gpu_families.py \
    -k "qwen2 or mistral or qwen3]"
  ;;
numbers)
  step kernels 150 python3 benchmarks/gpu_kernels_check.py --no-sweep --out "$LOG/kernels"
  step bench 300 python3 benchmarks/bench.py --peer 32
  step profile 100 python3 benchmarks/profile_decode.py --batch 1 16 256
  ;;
tests)
  step gpu_marked 240 "${PYTEST[@]}" -m gpu tests
  step cuda_files 240 "${PYTEST[@]}" "${CUDA_FILES[@]}"
  step spec 90 python3 benchmarks/spec_bench.py --device cuda --reps 3
  ;;
teaching)  # the default model: notebooks, then the workbench headless on its defaults
  for nb in notebooks/0[1-8]*.ipynb notebooks/10*.ipynb; do
    step "nb_$(basename "$nb" .ipynb | cut -c1-2)" 100 "${NBVAL[@]}" "$nb"
  done
  step workbench 150 python3 benchmarks/workbench_overhead.py --attached-only --reps 3 --threads 0
  ;;
0.6b)  # a random Qwen3-0.6B: notebooks, then the workbench at the bench's full cache
  random_06b > "$LOG/model.log" 2>&1
  BLOCKS=()  # the H200's bench cache (4,381 blocks) does not fit an 80 GB card: there, the card's own
  grep -q H200 "$LOG/gpu.txt" && BLOCKS=(--config num_kvcache_blocks=4381)
  step workbench 200 python3 benchmarks/workbench_overhead.py --model "$MODEL" --attached-only \
    --workload bench --engine-defaults --reps 2 --threads 0 "${BLOCKS[@]}"
  for nb in notebooks/0[1-8]*.ipynb notebooks/10*.ipynb; do
    NANOVLLM_MODEL=$MODEL step "nb_$(basename "$nb" .ipynb | cut -c1-2)" 90 "${NBVAL[@]}" "$nb"
  done
  ;;
esac
cat "$LOG/steps.txt"
tar czf "$OUT/all.tgz" -C "$LOG" .
cp "$LOG/steps.txt" "$OUT/" 2>/dev/null
for f in bench profile kernels gpu_marked cuda_files spec workbench notebooks skinny families; do
  [ -f "$LOG/$f.log" ] && cp "$LOG/$f.log" "$OUT/"
done
ls "$OUT"
