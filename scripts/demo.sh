#!/usr/bin/env bash
# The main job on built-in sample data. With a display, napari opens on the sample spread with
# the plugin's widgets docked; without one, the pipeline runs headless and writes its outputs and
# a screenshot (made on a virtual display when Xvfb is available) to ./out/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -z "${CI:-}" ]; then
  exec .venv/bin/chromosort demo --gui
elif command -v xvfb-run >/dev/null 2>&1; then
  exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/chromosort demo --out out/demo --screenshot
else
  exec .venv/bin/chromosort demo --out out/demo
fi
