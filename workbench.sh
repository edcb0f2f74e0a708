#!/usr/bin/env bash
# Set up the nano-vLLM Workbench, then start it in JupyterLab or run the tests.
#
#   ./workbench.sh                   JupyterLab on notebooks/05_step_by_step.ipynb, with the
#                                    built-in teaching model (CPU is fine)
#   ./workbench.sh /path/to/Qwen3    the same with a local Hugging Face checkpoint (NANOVLLM_MODEL)
#   ./workbench.sh "" --no-browser   extra JupyterLab options go after the model ("": the default)
#   ./workbench.sh test [args]       set up for the tests, then `python -m pytest args`
#                                    (e.g. ./workbench.sh test -q -m "not browser")
#
# Set-up (both modes; run it in the Python environment you want to use, e.g. a fresh venv):
#   - no torch yet: pip install torch==2.13.0 (the CPU wheel; on a GPU machine install a CUDA torch
#     first: any torch>=2.4 already present is kept)
#   - pip install -e ".[notebook]" (workbench) or -e ".[notebook,test,bridge]" (test mode), when
#     missing (bridge: msgspec, pyzmq, prometheus_client, for the vLLM bridge's tests)
#   - nothing is built: the default model of the notebooks and the workbench, the teaching model
#     (nanovllm.teaching: a tiny Qwen3 trained on generated text), ships with the package
#   - test mode only: the browser test needs /usr/bin/chromium. As root with apt-get it is installed
#     (apt-get install chromium fonts-liberation); otherwise a line says the browser test will be
#     skipped and why. GPU tests are skipped without CUDA, the tests marked vllm without vLLM
#     (NANOVLLM_VLLM_PYTHON: the Python that has it; README, "A real vLLM").
#
# JupyterLab (workbench mode):
#   URL    http://127.0.0.1:8888/lab/tree/notebooks/05_step_by_step.ipynb?token=nanovllm  (printed)
#   port   WORKBENCH_PORT   (default 8888)
#   host   WORKBENCH_IP     (default 127.0.0.1, loopback only; 0.0.0.0 to listen on all interfaces)
#   token  JUPYTER_TOKEN    (default "nanovllm"; set it to your own secret when not on loopback)
#   --allow-root is passed when run as root. The "official Jupyter news" pop-up is off:
#   --LabApp.news_url=None, and, unless you set JUPYTERLAB_SETTINGS_DIR yourself, JupyterLab's user
#   settings live in the ignored folder .jupyterlab-settings/ of this project, seeded with
#   fetchNews "false" (@jupyterlab/apputils-extension/notification.jupyterlab-settings).
set -euo pipefail
cd "$(dirname "$0")"
command -v python >/dev/null || python() { python3 "$@"; }

mode="lab"
if [ "${1:-}" = test ]; then mode="test"; shift; fi

python -c "import torch" 2>/dev/null || python -m pip install torch==2.13.0
if [ "$mode" = test ]; then
    python -c "import nanovllm, widgets, jupyterlab, pytest, nbval, hypothesis, pytest_timeout, playwright, nbclient, msgspec, zmq, prometheus_client" \
        2>/dev/null || python -m pip install -e ".[notebook,test,bridge]"
    if [ ! -x /usr/bin/chromium ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            { apt-get update && apt-get install -y --no-install-recommends chromium fonts-liberation; } ||
                echo "workbench.sh: could not install chromium; the browser test will be skipped" >&2
        else
            echo "workbench.sh: /usr/bin/chromium is missing and this is not a root machine with apt-get," \
                 "so the browser test will be skipped (install it: sudo apt-get install chromium fonts-liberation)" >&2
        fi
    fi
    exec python -m pytest "$@"
fi

python -c "import nanovllm, widgets, jupyterlab" 2>/dev/null || python -m pip install -e ".[notebook]"
if [ -n "${1:-}" ]; then export NANOVLLM_MODEL="$1"; fi
shift || true

port="${WORKBENCH_PORT:-8888}"
ip="${WORKBENCH_IP:-127.0.0.1}"
export JUPYTER_TOKEN="${JUPYTER_TOKEN:-nanovllm}"
if [ -z "${JUPYTERLAB_SETTINGS_DIR:-}" ]; then
    export JUPYTERLAB_SETTINGS_DIR="$PWD/.jupyterlab-settings"
    news="$JUPYTERLAB_SETTINGS_DIR/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
    if [ ! -e "$news" ]; then
        mkdir -p "$(dirname "$news")"
        echo '{"fetchNews": "false"}' >"$news"
    fi
fi
root=(); [ "$(id -u)" = 0 ] && root=(--allow-root)  # JupyterLab refuses root without it
host="$ip"; [ "$ip" = 0.0.0.0 ] && host=127.0.0.1
echo "=================================================================="
# the notebook's own URL: /lab alone opens whatever the last session had open (a Launcher at first)
echo " nano-vLLM Workbench: http://$host:$port/lab/tree/notebooks/05_step_by_step.ipynb?token=$JUPYTER_TOKEN"
echo " (port: WORKBENCH_PORT, token: JUPYTER_TOKEN; Ctrl-C twice stops it)"
echo "=================================================================="
exec python -m jupyterlab "${root[@]}" --ip="$ip" --port="$port" --port-retries=0 \
    --LabApp.news_url=None notebooks/05_step_by_step.ipynb "$@"
