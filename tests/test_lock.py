"""The locked set-up: every package in the environment that scripts/setup.sh made is pinned by the
lock, at the locked version."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / f"lock-py{sys.version_info[0]}.{sys.version_info[1]}.txt"
SEEDED = {"pip", "napari-chromosome-sort"}  # the venv's own pip; the project, installed -e


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("==")
            pins[_normal(name)] = version.strip()
    return pins


def test_lock_pins_what_pyproject_asks_for():
    pins = locked()
    for name in ("napari", "torch", "torchvision", "pyqt6", "onnxruntime", "pytest", "ruff", "uv"):
        assert name in pins, f"{name} is not in {LOCK.name}"
    assert pins["torch"].endswith("+cpu"), "the lock must pin the CPU build of torch"


@pytest.mark.skipif(
    not (Path(sys.prefix) / ".chromosort-setup").is_file(),
    reason="this environment was not made by scripts/setup.sh",
)
def test_environment_is_exactly_the_lock():
    pins = locked()
    loose = {}
    for dist in metadata.distributions():
        name = _normal(dist.metadata["Name"])
        if name not in SEEDED and pins.get(name) != dist.version:
            loose[name] = (dist.version, pins.get(name))
    assert not loose, f"installed but not as locked (installed, locked): {loose}"
