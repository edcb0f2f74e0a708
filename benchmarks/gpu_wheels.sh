#!/usr/bin/env bash
# Download, here (where pip reaches the index), the wheels the GPU machine lacks to run the
# notebooks under nbval: the Jupyter kernel and widget stack, plotly and nbval. Python 3.12,
# manylinux x86_64 (the device image's python3). Versions are the ones that run together on the
# CPU machines (shared/JUPYTER.md); what the device image already has (KINDS.md: pandas, narwhals,
# pytest, coverage, attrs, jinja2, pygments, packaging, psutil, typing-extensions,
# python-dateutil, six, ...) is not downloaded.
#
#   bash benchmarks/gpu_wheels.sh [DEST]     # DEST: default the main checkout's .whl/
#
# On the device (the call carries .whl):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PYTHONPATH
set -euo pipefail
ROOT=$(cd "$(git rev-parse --path-format=absolute --git-common-dir)/.." && pwd)  # the main checkout
DEST=${1:-$ROOT/.whl}
mkdir -p "$DEST"
rm -f "$DEST"/*.whl  # one version of each: two stop the whole install
grep -qx '/.whl/' "$ROOT/.git/info/exclude" 2>/dev/null || echo '/.whl/' >> "$ROOT/.git/info/exclude"

WHEELS=(
  # widgets and figures
  ipywidgets==8.1.9 widgetsnbextension==4.0.16 jupyterlab_widgets==3.0.17 comm==0.2.3
  plotly==7.1.0 anywidget==0.11.0 psygnal==0.16.1
  # the kernel nbval starts, and its client
  nbval==0.11.0 ipykernel==7.4.0 jupyter_client==8.10.0 jupyter_core==5.9.1 platformdirs==4.14.9
  nbformat==5.11.1 nbclient==0.11.0 fastjsonschema==2.22.3 jsonschema==4.26.0
  jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==0.30.0
  traitlets==5.15.0 tornado==6.6.1 pyzmq==27.3.0 debugpy==1.8.22 nest-asyncio2==1.7.4
  matplotlib-inline==0.2.2
  # IPython and what it needs (8.39: the last 8.x, made for Python 3.12; the CPU machines run 8.12)
  ipython==8.39.0 decorator==5.2.1 jedi==0.20.0 parso==0.8.7
  pexpect==4.8.0 ptyprocess==0.7.0 prompt_toolkit==3.0.52 wcwidth==0.7.0 stack-data==0.6.3
  executing==2.2.1 asttokens==3.0.1 pure_eval==0.2.3
)
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 \
         manylinux_2_35_x86_64; do
  PLATFORMS+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]}" -d "$DEST" "${WHEELS[@]}"
ls -1 "$DEST" | wc -l | xargs echo "wheels:"
du -sh "$DEST"
total=$(du -sb "$DEST" | cut -f1)
[ "$total" -lt $((64 * 2**20)) ] || { echo "over 64 MiB: a device call cannot carry $DEST" >&2; exit 1; }
