#!/usr/bin/env bash
# `make lock`: resolve pyproject.toml's [testing] set (plus requirements/tools.in) under the pins in
# requirements/pins.txt into one fully pinned lock per supported Python, for Linux x86_64 (glibc ≥ 2.34, the oldest that Qt 6.11 wheels run on).
# Pins already in a lock are kept unless pyproject.toml or the pins need others, so running it
# on an unchanged pyproject.toml changes nothing. To move every pin to the newest release that
# fits: UPGRADE=1 make lock.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/torch_source.sh
UV=${UV:-$( [ -x .venv/bin/uv ] && echo .venv/bin/uv || command -v uv || true )}
[ -n "$UV" ] || { echo "make lock needs uv: run 'make setup' first (or pip install uv)" >&2; exit 1; }
upgrade=()
[ -n "${UPGRADE:-}" ] && upgrade=(--upgrade)
for version in 3.11; do
  "$UV" pip compile pyproject.toml requirements/tools.in --extra testing \
    -c requirements/pins.txt --python-version "$version" --python-platform x86_64-manylinux_2_34 \
    "${TORCH_SOURCE[@]}" "${upgrade[@]}" --quiet \
    --no-header -o "requirements/lock-py$version.txt"
  { printf '%s\n' \
      "# Every package of napari-chromosome-sort[testing] (and uv) pinned, for Python $version on" \
      "# Linux x86_64. Made by 'make lock' (scripts/lock.sh) from pyproject.toml and" \
      "# requirements/pins.txt; do not edit by hand. How to install with it: README, Set-up."
    grep -v '^# ' "requirements/lock-py$version.txt" | grep -v '^#$' || true
  } > "requirements/lock-py$version.txt.tmp"
  mv "requirements/lock-py$version.txt.tmp" "requirements/lock-py$version.txt"
done
