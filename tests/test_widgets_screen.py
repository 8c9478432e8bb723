"""Every dock fits a 1920x1080 screen: docks scroll, tables show all their rows, nothing is cut."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from qtpy.QtWidgets import (
    QAbstractButton,
    QAbstractScrollArea,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLineEdit,
    QListWidget,
    QScrollArea,
    QTabBar,
    QTableWidget,
    QTabWidget,
    QWidget,
)

from napari_chromosome_sort.analysis import readout

PLUGIN = "napari-chromosome-sort"
WIDGETS = (
    "Segment spread",
    "Label chromosomes",
    "Train classifier",
    "Predict and explain",
    "Type readout",
    "Sorter gallery",
)
SCREEN = (1920, 1080)


def _labels_with_calls(viewer, name: str, seed: int, n: int = 60):
    rng = np.random.default_rng(seed)
    data = np.zeros((40, 40), np.int32)
    for i in range(n):
        data[(i % 10) * 4 : (i % 10) * 4 + 3, (i // 10) * 4 : (i // 10) * 4 + 3] = i + 1
    dist = readout.PAPER_DISTRIBUTIONS["WT"]
    classes = rng.choice(list(dist), n, p=list(dist.values()))
    features = pd.DataFrame(
        {"label": np.arange(1, n + 1), "status": "chromosome", "class": classes}
    )
    return viewer.add_labels(data, name=name, features=features)


def _fill(widgets: dict) -> None:
    """Results in every table and chart, as after a real run."""
    widgets["Train classifier"]._show_confusion(np.arange(9).reshape(3, 3), ["A", "B", "C"])
    widgets["Train classifier"].results.setText("Model saved to <b>model.safetensors</b>")
    calls = pd.DataFrame({"class": list("AABBBCCCCD")})
    widgets["Predict and explain"]._show_distribution(calls, ["A", "B", "C", "D"])
    widgets["Type readout"].compute()


def _not_laid_out_by_the_dock(widget: QWidget, top: QWidget) -> bool:
    """Qt's own parts, parts of a table, list or combo box (sized by their owner), and the
    content of a folded section (height 0 on purpose)."""
    if widget.objectName().startswith("qt_") or widget.maximumHeight() == 0:
        return True
    parent = widget.parentWidget()
    while parent is not None and parent is not top:
        if isinstance(parent, (QAbstractScrollArea, QComboBox)) or parent.maximumHeight() == 0:
            return True
        parent = parent.parentWidget()
    return False


def _cut(inner: QWidget) -> list[str]:
    """Visible parts of ``inner`` squeezed below their minimum or lying outside it."""
    problems = []
    for widget in inner.findChildren(QWidget):
        if not widget.isVisibleTo(inner) or _not_laid_out_by_the_dock(widget, inner):
            continue
        name = f"{type(widget).__name__} {widget.objectName() or ''}".strip()
        hint = widget.minimumSizeHint()
        need = widget.heightForWidth(widget.width()) if widget.hasHeightForWidth() else -1
        need = min(max(need, hint.height(), widget.minimumHeight()), widget.maximumHeight())
        if widget.height() < need or widget.width() < min(hint.width(), inner.width()):
            problems.append(f"{name} is {widget.width()}x{widget.height()}, needs {need} high")
        top_left = widget.mapTo(inner, widget.rect().topLeft())
        if top_left.y() + widget.height() > inner.height() or top_left.x() < 0:
            problems.append(f"{name} lies outside its dock")
        if isinstance(widget, QTableWidget) and widget.rowCount():
            rows = sum(widget.rowHeight(r) for r in range(widget.rowCount()))
            if widget.viewport().height() < rows:
                problems.append(f"table shows {widget.viewport().height()} of {rows} px of rows")
    return problems


@pytest.mark.timeout(300)
def test_docks_fit_a_1080_screen(make_napari_viewer, qtbot):
    from napari_chromosome_sort.synthetic import make_spread

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(*SCREEN)
    viewer.add_image(make_spread(seed=0).image, name="spread")
    _labels_with_calls(viewer, "WT spread", 0)
    for i in range(3):  # long layer names, as Predict makes them, in the readout's table
        _labels_with_calls(viewer, f"Giemsa spread of a long name {i} predicted classes", i + 1)
    docks, widgets = {}, {}
    for name in WIDGETS:
        dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=True)
        docks[name], widgets[name] = dock, getattr(widget, "inner", widget)
    _fill(widgets)
    qtbot.waitExposed(window)
    for name in WIDGETS:
        docks[name].raise_()
        docks[name].show()
        QApplication.processEvents()
        qtbot.wait(50)
        assert window.height() <= SCREEN[1], f"{name}: window {window.height()} px high"
        assert window.width() <= SCREEN[0], f"{name}: window {window.width()} px wide"
        assert docks[name].height() <= SCREEN[1] and docks[name].isVisible()
        assert _cut(widgets[name]) == [], name
        scroll = widgets[name].parentWidget().parentWidget()  # viewport, then the scroll area
        assert isinstance(scroll, QScrollArea), f"{name} does not scroll"
        assert scroll.viewport().width() >= widgets[name].minimumSizeHint().width(), name


def _without_help(inner: QWidget) -> list[str]:
    """Visible inputs of a dock with no tooltip (on themselves or on the row they sit in)."""
    inputs = (QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QListWidget)
    missing = []
    for widget in inner.findChildren(QWidget):
        if not isinstance(widget, inputs) or widget.objectName().startswith("qt_"):
            continue
        if _not_laid_out_by_the_dock(widget, inner) and not isinstance(widget, QLineEdit):
            continue
        parent, tip = widget, ""
        while parent is not None and parent is not inner and not tip:
            if isinstance(parent, (QTabWidget, QAbstractSpinBox)) and parent is not widget:
                break  # a tab bar's scroll buttons, a spin box's own line edit
            tip = parent.toolTip()
            parent = parent.parentWidget()
        own_part = (QAbstractSpinBox, QComboBox, QTabBar)  # a spin box's arrows, tab scrolling
        if not tip and not isinstance(widget.parentWidget(), own_part):
            text = widget.text() if hasattr(widget, "text") else ""
            missing.append(f"{type(widget).__name__} {text!r}")
    return missing


def test_every_option_has_help(make_napari_viewer):
    viewer = make_napari_viewer()
    for name in WIDGETS:
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=True)
        assert _without_help(getattr(widget, "inner", widget)) == [], name


def _hidden_rows(scroll: QScrollArea, rows: dict) -> list[str]:
    """Working rows of a dock that lie below what its scroll area shows without scrolling."""
    from qtpy.QtCore import QPoint

    view = scroll.viewport()
    return [
        f"{name} at {widget.mapTo(view, QPoint(0, 0)).y()} px of {view.height()}"
        for name, widget in rows.items()
        if widget.mapTo(view, QPoint(0, 0)).y() + widget.height() > view.height()
    ]


@pytest.mark.timeout(300)
def test_segment_and_label_docked_together_keep_their_rows_in_view(make_napari_viewer, qtbot):
    """Issue 31: docked from the Plugins menu one under the other, Label chromosomes got 67 px
    of a 1080-px screen under Segment spread. The plugin's docks now join as tabs, each with
    the whole height: every working row of each is in view without scrolling."""
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((64, 64), np.uint8), name="spread")
    segment_dock, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment spread")
    label_dock, label = viewer.window.add_plugin_dock_widget(PLUGIN, "Label chromosomes")
    window = segment_dock.window()  # Qt's own handle on the main window
    window.resize(*SCREEN)
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: label_dock in window.tabifiedDockWidgets(segment_dock), timeout=5000)
    seg, lab = segment.inner, label.inner
    rows = {
        segment: {
            "image": seg.image_picker.native,
            "Segment": seg.run_button,
            "Next": seg.next_button,
            "Keep": seg.keep_button,
            "Reject": seg.reject_button,
        },
        label: {
            "objects": lab.labels_picker.native,
            "preview": lab.preview,
            "Next": lab.next_button,
            "Clear": lab.clear_button,
        },
    }
    for dock, scroll in ((segment_dock, segment), (label_dock, label)):
        dock.raise_()
        QApplication.processEvents()
        qtbot.wait(100)
        assert _hidden_rows(scroll, rows[scroll]) == [], dock.windowTitle()
