#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: system libraries for a (virtual) display, a virtual
# environment in .venv, and the package with pinned CPU torch/torchvision and PyQt6.
# Re-running is cheap: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
SYSTEM_PACKAGES="xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0
  libxcb-cursor0 libxkbcommon-x11-0 libegl1 libgl1 libfontconfig1 libdbus-1-3"

log() { echo "[setup] $*" >&2; }

# 1. Linux system libraries that Qt needs for a display, and Xvfb for headless runs.
if [ "$(uname -s)" = Linux ] && command -v dpkg-query >/dev/null 2>&1; then
  missing=""
  for pkg in $SYSTEM_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    log "installing system packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
fi

# 2. Virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi

# 3. The package, its test extras, and the pins in constraints.txt (CPU torch, matching
#    torchvision, a PyQt6 that has a Qt wheel). Re-installed only when those files change.
stamp="$VENV/.chromosort-setup"
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing napari-chromosome-sort and its dependencies (first run: a few minutes)"
  # (pip's warnings about index folders that lack a package are noise on machines whose pip
  #  config lists local indexes; everything else it says is kept.)
  "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[testing]" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "$want" > "$stamp"
fi
