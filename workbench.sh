#!/usr/bin/env bash
# Set up and start the nano-vLLM Workbench in JupyterLab.
#   ./workbench.sh                 the built-in tiny random model (CPU is fine)
#   ./workbench.sh /path/to/Qwen3  a local Hugging Face checkpoint (sets NANOVLLM_MODEL)
# Extra JupyterLab options go after the model, e.g. ./workbench.sh "" --no-browser --port 8899
set -euo pipefail
cd "$(dirname "$0")"
command -v python >/dev/null || python() { python3 "$@"; }
# CPU machines: torch==2.13.0 is the CPU wheel. On a GPU machine install a CUDA torch first;
# any torch>=2.4 already present is kept.
python -c "import torch" 2>/dev/null || python -m pip install torch==2.13.0
python -c "import nanovllm, widgets, jupyterlab" 2>/dev/null || python -m pip install -e ".[notebook]"
if [ -n "${1:-}" ]; then export NANOVLLM_MODEL="$1"; fi
shift || true
root=(); [ "$(id -u)" = 0 ] && root=(--allow-root)  # JupyterLab refuses root without it
exec python -m jupyterlab "${root[@]}" notebooks/05_step_by_step.ipynb "$@"
