#!/usr/bin/env bash
# One device call (a GPU machine): every notebook under nbval on a random Qwen3-0.6B, then the
# workbench's cost on BENCH.md's workload (attached vs bare throughput). Logs in $OUT.
#
#   bash benchmarks/gpu_notebooks.sh                       # notebooks, then the overhead run
#   PART=notebooks bash benchmarks/gpu_notebooks.sh notebooks/0[1-4]*.ipynb   # some notebooks
#   PART=overhead bash benchmarks/gpu_notebooks.sh         # only the overhead run
#
# The call carries .whl (built here by benchmarks/gpu_wheels.sh: ipywidgets, plotly, anywidget,
# nbval, ipykernel and what they need; the device image has none of them). One call may run at most
# 10 minutes: every engine a notebook starts captures CUDA graphs, so split the notebooks over calls
# if they do not fit (each notebook's time is printed).
set -uo pipefail
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
PART=${PART:-all}

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:$PWD/benchmarks:${PYTHONPATH:-}  # the kernels nbval starts import from here
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

MODEL=${NANOVLLM_MODEL:-/tmp/nanovllm-random-qwen3-0.6b}
if [ ! -f "$MODEL/model.safetensors" ]; then
  python3 -c "
import sys, time
from nanovllm.testing.random_model import QWEN3_0_6B, make_random_model
t = time.perf_counter()
make_random_model(sys.argv[1], QWEN3_0_6B, device='cuda')
print(f'built a random Qwen3-0.6B in {time.perf_counter() - t:.1f} s at {sys.argv[1]}')
" "$MODEL" || exit 1
fi
export NANOVLLM_MODEL=$MODEL
status=0

if [ "$PART" = all ] || [ "$PART" = notebooks ]; then
  NOTEBOOKS=("$@"); [ ${#NOTEBOOKS[@]} -gt 0 ] || NOTEBOOKS=(notebooks/*.ipynb)
  # pyproject's addopts: --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
  for nb in "${NOTEBOOKS[@]}"; do
    start=$SECONDS
    python3 -m pytest -q -p no:cacheprovider --durations=5 "$nb" > "$OUT/$(basename "$nb" .ipynb).log" 2>&1
    rc=$?
    [ "$rc" = 0 ] || { status=1; grep -v '^\s*$' "$OUT/$(basename "$nb" .ipynb).log" | tail -30; }
    echo "notebook $nb: $([ "$rc" = 0 ] && echo passed || echo FAILED) in $((SECONDS - start)) s"
  done
  echo "=== nbval exit code: $status"
fi

if [ "$PART" = all ] || [ "$PART" = overhead ]; then
  # BENCH.md's workload (256 requests, 142,827 prompt / 133,966 output tokens) on the engine's own
  # config; two engines share the GPU, so each gets a fixed cache: 1,536 blocks of 256 hold all
  # 256 requests at once (about 44 GiB each for Qwen3-0.6B)
  python3 benchmarks/workbench_overhead.py --workload bench --engine-defaults --reps 3 --threads 0 \
    --config kvcache_block_size=256 --config num_kvcache_blocks=1536 --config max_model_len=2048 \
    2>&1 | tee "$OUT/overhead.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
exit "$status"
