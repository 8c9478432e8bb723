"""The plugin survives the torch a user has: the registry's default (CUDA) wheel brings triton and a
torchvision whose extension is ``_C_stable.so``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _triton_after_widget_import(**env: str) -> str:
    code = (
        "import sys, napari_chromosome_sort._widgets;"
        "print(repr(sys.modules.get('triton', 'not imported')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
        timeout=300,
    )
    return done.stdout.strip()


def test_napari_side_marks_triton_absent():
    # torch then never loads triton's LLVM beside napari's OpenGL context
    assert _triton_after_widget_import() == "None"


def test_allow_triton_leaves_it_importable():
    assert _triton_after_widget_import(CHROMOSORT_ALLOW_TRITON="1") != "None"


def test_stable_abi_extension_is_loaded(tmp_path, monkeypatch):
    """torchvision >= 0.29 ships ``_C_stable.so``; defining schemas beside it aborts the process."""
    import torch

    from napari_chromosome_sort.classification.models import _torchvision_compat as compat

    package = tmp_path / "torchvision"
    package.mkdir()
    (package / "_C_stable.so").write_bytes(b"")
    (package / "_C_helpers.py").write_text("")
    spec = type("Spec", (), {"submodule_search_locations": [str(package)]})()
    monkeypatch.setattr(compat.importlib.util, "find_spec", lambda name: spec)
    loaded = []
    monkeypatch.setattr(torch.ops, "load_library", loaded.append)
    assert compat._load_extension() is True
    assert loaded == [str(package / "_C_stable.so")]


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.skipif(
    os.environ.get("CHROMOSORT_CHECK_DEFAULT_TORCH") != "1",
    reason="installs the registry's default torch wheel (several GB): set "
    "CHROMOSORT_CHECK_DEFAULT_TORCH=1 (CI does)",
)
def test_train_then_predict_in_viewer_with_default_torch():
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "check_default_torch.sh")],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "train and predict finished in the viewer" in done.stdout
