"""The house: the core (everything but ``_widgets``) imports neither Qt nor napari, so it runs
headless; files, functions and folders stay small; public packages import light."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import importlib, pkgutil, sys
import napari_chromosome_sort as pkg
for module in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
    if "._widgets" in module.name or module.name.endswith("__main__"):
        continue
    importlib.import_module(module.name)
gui = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy")
print(" ".join(sorted(name for name in sys.modules if name.split(".")[0] in gui)))
"""


def test_core_imports_neither_qt_nor_napari():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.strip() == "", f"the core imports GUI modules: {done.stdout[:300]}"


def test_the_check_sees_a_gui_import():
    # the same walk, seeded with a widget module, does report napari (the test can fail)
    seeded = SCRIPT.replace(
        "import napari_chromosome_sort as pkg",
        "import napari_chromosome_sort as pkg\nimport napari_chromosome_sort._widgets.segment",
    )
    done = subprocess.run(
        [sys.executable, "-c", seeded], capture_output=True, text=True, timeout=300, check=True
    )
    assert "napari" in done.stdout.split() or "qtpy" in done.stdout.split()


# ------------------------------------------------------------------ the house: sizes and imports

SRC = Path(__file__).resolve().parents[1] / "src" / "napari_chromosome_sort"
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80
MAX_MODULES_PER_FOLDER = 12  # besides __init__.py; more ask for sub-packages


def house_breaches(root: Path) -> dict[str, list[str]]:
    """{file or folder relative to ``root``: what breaks the house rules}."""
    breaches: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_FILE_LINES:
            breaches.setdefault(name, []).append(f"{len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    breaches.setdefault(name, []).append(f"{node.name}: {length} lines")
    for folder in sorted({p.parent for p in root.rglob("*.py")}):
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        if len(modules) > MAX_MODULES_PER_FOLDER:
            name = folder.relative_to(root).as_posix() + "/"
            breaches.setdefault(name, []).append(f"{len(modules)} modules")
    return breaches


def test_short_files_short_functions_small_folders():
    breaches = house_breaches(SRC)
    assert not breaches, f"over the house limits: {breaches}"


def test_the_house_check_sees_a_breach(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (package / "long.py").write_text(f"def long():\n{body}\n")
    for i in range(MAX_MODULES_PER_FOLDER):
        (package / f"m{i}.py").write_text("\n" * (MAX_FILE_LINES + 1))
    breaches = house_breaches(tmp_path)
    assert breaches["pkg/long.py"] == [f"long: {MAX_FUNCTION_LINES + 1} lines"]
    assert breaches["pkg/m0.py"] == [f"{MAX_FILE_LINES + 1} lines"]
    assert breaches["pkg/"] == [f"{MAX_MODULES_PER_FOLDER + 1} modules"]


LIGHT = """
import sys
import napari_chromosome_sort.{package} as package
names = sorted(package.__all__)
heavy = sorted(m for m in ("torch", "matplotlib", "scipy", "sklearn") if m in sys.modules)
print(" ".join(heavy))
"""


@pytest.mark.parametrize("package", ["classification", "classification.training", "analysis"])
def test_public_packages_import_light(package):
    """Importing a public package imports none of its heavy modules; its names come on use."""
    done = subprocess.run(
        [sys.executable, "-c", LIGHT.format(package=package)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert done.stdout.strip() == "", f"{package} imports {done.stdout.strip()}"


@pytest.mark.parametrize("package", ["classification", "classification.training", "analysis"])
def test_every_public_name_resolves(package):
    module = importlib.import_module(f"napari_chromosome_sort.{package}")
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018
