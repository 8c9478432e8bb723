#!/usr/bin/env bash
# Idempotent set-up for a fresh Linux machine: system libraries for a (virtual) display, a virtual
# environment in .venv, and every package pinned by the lock for this Python
# (requirements/lock-pyX.Y.txt: CPU torch, PyQt6, the test tools), installed by uv with bytecode
# compiled. Re-running is cheap: each step is skipped when already done.
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

# 2. The lock for this Python.
version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
lock=requirements/lock-py$version.txt
if [ ! -f "$lock" ]; then
  echo "[setup] no lock for Python $version (locks: $(ls requirements/lock-py*.txt | tr '\n' ' '))." \
    "Run with a locked Python, e.g. 'PYTHON=python3.11 make demo'." >&2
  exit 1
fi

# 3. Virtual environment, with the locked uv in it.
if [ ! -x "$VENV/bin/uv" ]; then
  log "creating $VENV (Python $version)"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
    "$(grep -m1 '^uv==' "$lock")" 2> >(grep -v "is neither a file nor a directory" >&2)
fi

# 4. Every locked package, then the project itself (editable, no further resolution). Redone only
#    when the lock or pyproject.toml changes.
stamp="$VENV/.chromosort-setup"
want=$(cat pyproject.toml "$lock" | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing the locked packages (about 1 min on 2 cores with an empty cache)"
  source scripts/torch_source.sh
  "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --compile-bytecode \
    "${TORCH_SOURCE[@]}" -r "$lock"
  "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi
