#!/usr/bin/env bash
# The plugin survives the torch a user installs: a clean environment with every locked package
# except torch and torchvision, which come from a plain `pip install torch torchvision` (on Linux
# the registry's default CUDA build, with triton), then Train -> Predict through the docks in a
# napari viewer on a software OpenGL display (Xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
version=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log() { echo "[default-torch] $*" >&2; }

log "a clean environment with the default torch wheel (several GB on a first run)"
.venv/bin/uv venv --quiet --seed --python .venv/bin/python "$tmp/env"
grep -v -E '^(torch|torchvision)==' "requirements/lock-py$version.txt" > "$tmp/lock.txt"
.venv/bin/uv pip install --quiet --python "$tmp/env/bin/python" -r "$tmp/lock.txt"
"$tmp/env/bin/python" -m pip install -q --disable-pip-version-check torch torchvision \
  2> >(grep -v "is neither a file nor a directory" >&2)
.venv/bin/uv pip install --quiet --python "$tmp/env/bin/python" --no-deps --no-build-isolation .
"$tmp/env/bin/python" -c 'import importlib.util, torch
assert importlib.util.find_spec("triton"), "this torch has no triton: nothing to check"
print("torch", torch.__version__, "with triton")' >&2

log "Train -> Predict in the viewer"
cd "$tmp"
xvfb-run -a -s "-screen 0 1280x1024x24" env/bin/python "$root/scripts/train_predict_in_viewer.py"
