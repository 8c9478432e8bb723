#!/usr/bin/env bash
# Packaging a user can rely on: build the wheel and the sdist, install each into a clean
# environment (the lock as constraints, nothing from this checkout on the path), and check that
# `chromosort --help` runs, napari's plugin manager finds and validates the plugin, and the
# bundled model, sample spread and their licences are inside.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
version=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
lock=$root/requirements/lock-py$version.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log() { echo "[package] $*" >&2; }

log "building the wheel and the sdist"
.venv/bin/python -m build --no-isolation --outdir "$tmp/dist" . >"$tmp/build.log" 2>&1 \
  || { cat "$tmp/build.log" >&2; exit 1; }
wheel=$(ls "$tmp"/dist/*.whl)
sdist=$(ls "$tmp"/dist/*.tar.gz)
.venv/bin/python -m zipfile -l "$wheel" >"$tmp/wheel.txt"
for member in napari.yaml data/wt_squeezenet1_1.safetensors data/wt_squeezenet1_1.LICENSE.txt \
  data/giemsa_ddx11_spread_3.png data/giemsa_ddx11_spread_3.LICENSE.txt data/crossing_model.json \
  data/pixel_model.safetensors data/junction_model.json; do
  grep -q "napari_chromosome_sort/$member" "$tmp/wheel.txt" \
    || { log "the wheel lacks $member"; exit 1; }
done

log "installing the locked packages into a clean environment"
.venv/bin/uv venv --quiet --python .venv/bin/python "$tmp/env"
source scripts/torch_source.sh
.venv/bin/uv pip install --quiet --python "$tmp/env/bin/python" "${TORCH_SOURCE[@]}" -r "$lock"

cd "$tmp"  # nothing of the checkout on sys.path from here on
for artefact in "$wheel" "$sdist"; do
  log "checking $(basename "$artefact")"
  "$root/.venv/bin/uv" pip install --quiet --python env/bin/python --no-deps --no-build-isolation \
    --reinstall-package napari-chromosome-sort "$artefact"
  env/bin/chromosort --help >/dev/null
  env/bin/npe2 validate napari-chromosome-sort >/dev/null
  env/bin/python - <<'PY'
from importlib.resources import files
import napari_chromosome_sort as pkg
from napari_chromosome_sort._sample_data import make_giemsa_spread
data = files(pkg) / "data"
for name in ("wt_squeezenet1_1.LICENSE.txt", "giemsa_ddx11_spread_3.LICENSE.txt"):
    assert (data / name).read_text().strip(), name
assert "site-packages" in pkg.__file__, pkg.__file__
layers = make_giemsa_spread()
assert layers and layers[0][0].shape[:2] == (1024, 1440), layers[0][0].shape
PY
done
log "wheel and sdist install and run"
