"""Open napari with the real sample spread and every plugin widget docked."""

from __future__ import annotations

import importlib

import napari
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QTabBar

from napari_chromosome_sort._sample_data import make_giemsa_spread
from napari_chromosome_sort._widgets.shared.docks import ScrollDock

WIDGETS = (
    ("segment", "SegmentWidget", "Segment spread"),
    ("label", "LabelWidget", "Label chromosomes"),
    ("train", "TrainWidget", "Train classifier"),
    ("predict", "PredictWidget", "Predict and explain"),
    ("readout", "ReadoutWidget", "Type readout"),
    ("gallery", "GalleryWidget", "Sorter gallery"),
)


def dock_all(viewer) -> dict:
    """Dock every plugin widget (tabbed on the right, each in a scroll area as from the Plugins
    menu); returns {title: widget}. Each widget's module is imported by name (the table above,
    which tests/test_manifest.py checks against napari.yaml)."""
    docked, docks = {}, []
    for module_name, class_name, title in WIDGETS:
        module = importlib.import_module(f"napari_chromosome_sort._widgets.{module_name}")
        widget = getattr(module, class_name)(viewer)
        docks.append(
            viewer.window.add_dock_widget(ScrollDock(widget), name=title, area="right", tabify=True)
        )
        docked[title] = widget
    _readable_tabs(docks[0])
    docks[0].raise_()  # open on the first step of the pipeline ...
    QTimer.singleShot(0, docks[0].raise_)  # ... also once the window is shown and laid out
    return docked


def _readable_tabs(dock) -> None:
    """Whole tab titles ("Label chromosomes", not "Label chrom…"), scrolling when they overflow.
    The tab bars belong to the main window that holds ``dock`` (Qt's own ``window()``; napari
    has no public handle on its Qt window)."""
    for bar in dock.window().findChildren(QTabBar):
        bar.setElideMode(Qt.TextElideMode.ElideNone)
        bar.setUsesScrollButtons(True)


def open_demo_viewer(show: bool = True, run: bool = False):
    """A napari viewer with the real Giemsa sample spread and all widgets, and {title: widget};
    ``run=True`` starts the loop."""
    viewer = napari.Viewer(title="napari-chromosome-sort demo", show=show)
    for data, meta, kind in make_giemsa_spread():
        getattr(viewer, f"add_{kind}")(data, **meta)
    widgets = dock_all(viewer)
    if run:
        napari.run()
    return viewer, widgets


if __name__ == "__main__":
    open_demo_viewer(show=True, run=True)
