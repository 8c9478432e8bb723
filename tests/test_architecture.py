"""The core (everything but ``_widgets``) imports neither Qt nor napari, so it runs headless."""

import subprocess
import sys

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
