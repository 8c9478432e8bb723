#!/usr/bin/env bash
# The main job on built-in sample data. With a display, napari opens on the sample spread with
# the plugin's widgets docked; without one, the pipeline runs headless and writes its outputs and
# a screenshot (made on a virtual display when Xvfb is available) to ./out/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
# Offline development checkouts keep the ImageNet SqueezeNet backbone beside the repo; elsewhere
# the weights come from the torch hub cache or a download (see README).
shared_weights=../shared/weights/squeezenet1_1_imagenet_features.pth
if [ -z "${CHROMOSORT_WEIGHTS:-}" ] && [ -f "$shared_weights" ]; then
  export CHROMOSORT_WEIGHTS="$shared_weights"
fi
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -z "${CI:-}" ]; then
  exec .venv/bin/chromosort demo --gui
elif command -v xvfb-run >/dev/null 2>&1; then  # out/: the checkout's own (git-ignored) outputs
  exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/chromosort demo --out out/demo \
    --screenshot --overwrite
else
  exec .venv/bin/chromosort demo --out out/demo --overwrite
fi
