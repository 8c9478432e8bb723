"""How a widget sits in napari's dock area: a scroll area round it, the plugin's docks sharing
the height as tabs, tables as tall as their rows, pictures for previews."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QEvent, QSize, Qt, QTimer
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (
    QAbstractScrollArea,
    QDockWidget,
    QFrame,
    QMainWindow,
    QScrollArea,
    QStyle,
    QTableWidget,
    QWidget,
)


class ScrollDock(QScrollArea):
    """A dock widget's content in a vertical scroll area.

    A tall widget then scrolls inside its dock instead of growing napari's window beyond the
    screen. The dock is as wide as the content needs, so nothing is cut at the side. Docked
    beside another of the plugin's docks in the same area, it joins it as a tab (and is shown):
    stacked, each dock got a sliver of the height (Label chromosomes 67 px under Segment spread
    on a 1080-px screen) and one scrolled for every click; tabbed, each has the full height.
    """

    def __init__(self, inner: QWidget):
        super().__init__()
        self._placed = False
        self.inner = inner
        self.setWidget(inner)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWindowTitle(inner.windowTitle())
        inner.installEventFilter(self)

    def minimumSizeHint(self) -> QSize:
        """As wide as the content's minimum (plus the scroll bar), short: the rest scrolls."""
        bar = self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
        width = max(self.inner.minimumSizeHint().width(), self.inner.minimumWidth())
        return QSize(width + bar + 2 * self.frameWidth(), super().minimumSizeHint().height())

    def showEvent(self, event) -> None:
        """On the first show, once napari has placed the dock: join the plugin's docks."""
        super().showEvent(event)
        if not self._placed:
            self._placed = True
            QTimer.singleShot(0, self._join_plugin_docks)

    def _join_plugin_docks(self) -> None:
        dock = _dock_of(self)
        window = dock.parentWidget() if dock is not None else None
        if not isinstance(window, QMainWindow) or dock.isFloating():
            return
        if window.tabifiedDockWidgets(dock):
            return  # already tabbed (napari's tabify=True, or the demo layout)
        area = window.dockWidgetArea(dock)
        others = [
            other
            for other in window.findChildren(QDockWidget)
            if other is not dock
            and other.isVisible()
            and not other.isFloating()
            and window.dockWidgetArea(other) == area
            and other.findChild(ScrollDock) is not None
        ]
        if others:
            window.tabifyDockWidget(others[-1], dock)
            dock.raise_()

    def eventFilter(self, watched, event) -> bool:
        """Widen the dock when its content grows (e.g. a table filled)."""
        if watched is self.inner and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # content grew (a table filled): the dock widens with it
        return super().eventFilter(watched, event)


def _dock_of(widget: QWidget) -> QDockWidget | None:
    """The Qt dock widget holding ``widget`` (napari docks are QDockWidgets), or None."""
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent


def fit_table_to_rows(table: QTableWidget) -> None:
    """Size a table to show every row and column: no inner scroll bar, no empty space."""
    table.resizeColumnsToContents()
    table.resizeRowsToContents()
    header = table.horizontalHeader()
    height = 0 if header.isHidden() else max(header.height(), header.sizeHint().height())
    height += sum(table.rowHeight(row) for row in range(table.rowCount()))
    table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    table.setSizeAdjustPolicy(QAbstractScrollArea.SizeAdjustPolicy.AdjustToContents)
    table.setFixedHeight(height + 2 * table.frameWidth())


def rgb_pixmap(rgb: np.ndarray, side: int = 160) -> QPixmap:
    """A QPixmap of an RGB or grey uint8/float image, scaled to ``side`` px."""
    array = np.asarray(rgb)
    if array.dtype != np.uint8:
        top = float(array.max()) or 1.0
        array = np.clip(array / top * 255, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    array = np.ascontiguousarray(array[..., :3])
    height, width = array.shape[:2]
    image = QImage(array.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(image).scaled(
        side,
        side,
        Qt.AspectRatioMode.KeepAspectRatio,
        Qt.TransformationMode.SmoothTransformation,
    )
