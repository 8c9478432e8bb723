"""Shared glue for the dock widgets: workers, colour maps, forms, layer <-> core conversion.

Nothing here implements image analysis; it only moves data between napari layers and the core.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent, QSize, Qt
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (
    QAbstractScrollArea,
    QFrame,
    QScrollArea,
    QStyle,
    QTableWidget,
    QWidget,
)

from napari_chromosome_sort.display.colours import class_colours
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.segmentation import KEPT, reconcile_objects

STATUS_COLOURS = {
    "chromosome": "#33dd55",
    "nucleus": "#3388ff",
    "cluster": "#ff9922",
    "crossing-resolved": "#22cccc",
    "debris": "#999999",
    "border": "#cc44cc",
    "rejected": "#ff3333",
}


# ----------------------------------------------------------------------------- errors / workers
def report_error(error: BaseException, what: str = "") -> None:
    """Turn an exception into a napari notification with the reason (never a silent failure)."""
    prefix = f"{what}: " if what else ""
    if isinstance(error, ChromosortError):
        show_error(f"{prefix}{error}")
    else:
        show_error(f"{prefix}{type(error).__name__}: {error}")
        traceback.print_exception(type(error), error, error.__traceback__)


def start_worker(
    func: Callable[..., Any],
    *args: Any,
    on_yield: Callable[[Any], None] | None = None,
    on_return: Callable[[Any], None] | None = None,
    on_finish: Callable[[], None] | None = None,
    on_abort: Callable[[], None] | None = None,
    what: str = "",
    **kwargs: Any,
):
    """Run ``func`` (a generator or plain function) in a napari thread worker and start it.

    A cancelled generator is closed (its ``finally`` blocks run: locks released, temporary files
    removed) rather than left suspended until the worker is collected."""
    import inspect

    from napari.qt.threading import create_worker

    steps = func(*args, **kwargs) if inspect.isgeneratorfunction(func) else None
    if steps is not None:

        def run_steps():
            return (yield from steps)

        worker = create_worker(run_steps, _start_thread=False, _ignore_errors=True)
        worker.aborted.connect(steps.close)
    else:
        worker = create_worker(func, *args, _start_thread=False, _ignore_errors=True, **kwargs)
    if on_yield is not None and hasattr(worker, "yielded"):
        worker.yielded.connect(on_yield)
    if on_return is not None:
        worker.returned.connect(on_return)
    worker.errored.connect(lambda error: report_error(error, what))
    if on_abort is not None and hasattr(worker, "aborted"):
        worker.aborted.connect(on_abort)
    if on_finish is not None:
        worker.finished.connect(on_finish)
    worker.start()
    return worker


# ----------------------------------------------------------------------------- colours
def hex_to_rgba(colour: str, alpha: float = 1.0) -> np.ndarray:
    """RGBA floats in [0, 1] of a ``#rrggbb`` colour."""
    colour = colour.lstrip("#")
    rgb = [int(colour[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    return np.array([*rgb, alpha], dtype=np.float32)


def colormap_from_mapping(
    label_to_key: dict[int, str], key_colours: dict[str, str], default: str | None = None
) -> DirectLabelColormap:
    """A DirectLabelColormap colouring each label by the colour of its key (status or class)."""
    colours: dict[int | None, Any] = {None: np.zeros(4, np.float32), 0: np.zeros(4, np.float32)}
    if default is not None:
        colours[None] = hex_to_rgba(default, 0.6)
    for label, key in label_to_key.items():
        if key in key_colours:
            colours[int(label)] = hex_to_rgba(key_colours[key])
    return DirectLabelColormap(color_dict=colours)


def status_colormap(features: pd.DataFrame) -> DirectLabelColormap:
    """Colours of an objects layer by status (kept objects where a status is missing)."""
    if features is None or len(features) == 0 or "status" not in features:
        return colormap_from_mapping({}, {}, default=STATUS_COLOURS[KEPT])
    mapping = dict(zip(features["label"].astype(int), features["status"].astype(str), strict=True))
    return colormap_from_mapping(mapping, STATUS_COLOURS, default=STATUS_COLOURS[KEPT])


def class_legend(classes: Iterable[str], keys: bool = False) -> str:
    """Rich text: a coloured square and the name of each class (with its number key)."""
    colours = class_colours(classes)
    return "  ".join(
        f'<span style="color:{colour}">■</span> {f"{i + 1}: " if keys else ""}{cls}'
        for i, (cls, colour) in enumerate(colours.items())
    )


# ----------------------------------------------------------------------------- layers
def layer_image(layer) -> np.ndarray:
    """The pixels of an image layer as a numpy array (first scale of multiscale data)."""
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    return np.asarray(data)


def sync_features(layer) -> pd.DataFrame:
    """Make ``layer.features`` match ``layer.data`` after hand edits (see reconcile_objects)."""
    table = with_index(reconcile_objects(np.asarray(layer.data), layer.features))
    layer.features = table
    return table


def _fill_index_features(table: pd.DataFrame, max_label: int = 0) -> pd.DataFrame:
    """napari maps label values to feature rows through an 'index' column (hover status bar)."""
    table = table.reset_index(drop=True)
    table["index"] = table["label"].astype(int) if len(table) else pd.Series(dtype=int)
    return table


def with_index(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of a per-object table ready for ``Labels.features`` (adds the 'index' column)."""
    return _fill_index_features(table.copy())


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def label_at(layer, position) -> int:
    """Label value under a world position (0 if outside or background)."""
    value = layer.get_value(position, world=True)
    if isinstance(value, tuple):  # multiscale
        value = value[1]
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def feature_row(layer, label: int) -> dict | None:
    """The features row of ``label`` in a Labels layer as a dict, or None."""
    features = layer.features
    if not len(features) or "label" not in features:
        return None
    match = features[features["label"].astype(int) == int(label)]
    return None if match.empty else match.iloc[0].to_dict()


def kept_labels(layer) -> list[int]:
    """Labels of the objects kept as ``chromosome`` (every label when there are no statuses)."""
    features = layer.features
    if not len(features) or "status" not in features:
        return sorted(int(v) for v in np.unique(layer.data) if v)
    return sorted(features.loc[features["status"] == KEPT, "label"].astype(int).tolist())


# ----------------------------------------------------------------------------- Qt bits
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


# ----------------------------------------------------------------------------- dataclass forms
def field_help(cls) -> dict[str, str]:
    """Per-field help of dataclass ``cls``: the ``"help"`` of its fields' metadata."""
    return {f.name: f.metadata["help"] for f in dataclasses.fields(cls) if f.metadata.get("help")}


def main_fields(cls) -> tuple[str, ...]:
    """Fields of dataclass ``cls`` that a form shows in view (metadata ``"advanced": False``);
    the others are folded under "Advanced"."""
    return tuple(f.name for f in dataclasses.fields(cls) if not f.metadata.get("advanced", True))


AUTO = -1  # spin-box value shown as "auto" for a number field left at None


def dataclass_form(
    cls,
    skip: Iterable[str] = (),
    on_change: Callable[[], None] | None = None,
    keep: Iterable[str] | None = None,
):
    """A magicgui Container with one widget per simple field of dataclass ``cls`` (only the
    fields in ``keep`` when given, never those in ``skip``).

    Returns ``(container, read, widgets)``; ``read()`` builds a ``cls`` instance from the
    widgets. Each widget's label, tooltip and choices come from the field's metadata
    (``"label"``, ``"help"``, ``"choices"``; see :mod:`napari_chromosome_sort.fields`). A field
    whose default is None ("chosen automatically") gets an "auto" entry: the first item of a
    choice box or the lowest value of a spin box. Other fields that are not bool/int/float/str
    keep their default.
    """
    from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, LineEdit, SpinBox

    instance = cls()
    helps = field_help(cls)
    widgets = {}
    integers: set[str] = set()
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name.startswith("_") or (keep is not None and f.name not in keep):
            continue
        value = getattr(instance, f.name)
        label = f.metadata.get("label") or f.name.replace("_", " ")
        tooltip = helps.get(f.name, label)
        kind = str(f.type).split("|")[0].strip() if value is None else type(value).__name__
        choices = list(f.metadata.get("choices", ()))
        if kind == "bool":
            widget = CheckBox(value=value, label=label, tooltip=tooltip)
        elif kind == "int" and value is not None:
            widget = SpinBox(value=value, min=-(10**9), max=10**9, label=label, tooltip=tooltip)
        elif kind == "int":  # a QDoubleSpinBox with whole steps: it can show "auto"
            widget = FloatSpinBox(
                value=AUTO, min=AUTO, max=10**6, step=1, label=label, tooltip=tooltip
            )
            widget.native.setDecimals(0)
            integers.add(f.name)
        elif kind == "float":
            span = max(abs(value or 0) * 100, 1000.0)
            widget = FloatSpinBox(
                value=AUTO if value is None else value,
                min=AUTO if value is None else -span,
                max=span,
                step=0.001 if value is None else _step(value),
                label=label,
                tooltip=tooltip,
            )
        elif kind == "str" and len(choices) > 1:
            if value is None:
                choices.insert(0, "auto")
            elif value not in choices:
                choices.insert(0, value)
            widget = ComboBox(choices=choices, value=value or "auto", label=label, tooltip=tooltip)
        elif kind == "str" and value is not None:
            widget = LineEdit(value=value, label=label, tooltip=tooltip)
        else:
            continue
        if value is None and kind in ("int", "float"):
            widget.native.setSpecialValueText("auto")
        widget.native.setToolTip(tooltip)
        widgets[f.name] = widget
        if on_change is not None:
            widget.changed.connect(lambda *_: on_change())
    container = Container(widgets=list(widgets.values()), labels=True)
    optional = {f.name for f in dataclasses.fields(cls) if getattr(instance, f.name) is None}

    def read():
        """The dataclass instance the form shows now."""
        values = {}
        for name, widget in widgets.items():
            value = widget.value
            if name in optional and (value == "auto" or value == AUTO):
                value = None
            elif name in integers:
                value = int(round(value))
            values[name] = value
        return dataclasses.replace(instance, **values)

    return container, read, widgets


def _step(value: float) -> float:
    """A spin-box step fine enough to show ``value`` exactly (magicgui derives decimals)."""
    if value == 0:
        return 0.01
    decimals = 0
    while decimals < 6 and not np.isclose(round(value, decimals), value, rtol=0, atol=1e-9):
        decimals += 1
    magnitude = 10 ** np.floor(np.log10(abs(value))) / 10
    return float(min(magnitude, 10.0**-decimals) if decimals else magnitude)


class ScrollDock(QScrollArea):
    """A dock widget's content in a vertical scroll area.

    A tall widget then scrolls inside its dock instead of growing napari's window beyond the
    screen. The dock is as wide as the content needs, so nothing is cut at the side.
    """

    def __init__(self, inner: QWidget):
        super().__init__()
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

    def eventFilter(self, watched, event) -> bool:
        """Widen the dock when its content grows (e.g. a table filled)."""
        if watched is self.inner and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # content grew (a table filled): the dock widens with it
        return super().eventFilter(watched, event)


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


def notify(message: str) -> None:
    """Show an information notification."""
    show_info(message)


class LayerPicker:
    """A QComboBox listing the viewer's layers of some types, kept in sync with the layer list."""

    def __init__(self, viewer, layer_types: tuple, allow_none: str | None = None):
        from qtpy.QtWidgets import QComboBox

        self.viewer = viewer
        self.layer_types = layer_types
        self.allow_none = allow_none
        self.combo = QComboBox()
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self.refresh)
        self.refresh()

    def refresh(self, *_):
        """List the viewer's layers of the wanted kinds again, keeping the choice."""
        current = self.combo.currentText()
        self.combo.blockSignals(True)
        self.combo.clear()
        if self.allow_none:
            self.combo.addItem(self.allow_none)
        for layer in self.viewer.layers:
            if isinstance(layer, self.layer_types):
                self.combo.addItem(layer.name)
                layer.events.name.connect(self.refresh)
        index = self.combo.findText(current)
        if index >= 0:
            self.combo.setCurrentIndex(index)
        self.combo.blockSignals(False)
        if index < 0:
            self.combo.currentIndexChanged.emit(self.combo.currentIndex())

    def layer(self):
        """The chosen layer, or None."""
        name = self.combo.currentText()
        if name and name in self.viewer.layers and name != self.allow_none:
            layer = self.viewer.layers[name]
            if isinstance(layer, self.layer_types):
                return layer
        return None

    def set_layer(self, layer) -> None:
        """Choose ``layer`` in the combo box."""
        self.refresh()
        index = self.combo.findText(layer.name)
        if index >= 0:
            self.combo.setCurrentIndex(index)


_WARM = False


def warm_imports() -> None:
    """Import the heavy libraries on the GUI thread once, before a worker needs them.

    A C-extension import inside a worker thread holds the GIL for long stretches (hundreds of
    ms for scikit-learn or torch) and would stall the event loop; importing them up front
    costs one short pause when the first job starts instead.
    """
    global _WARM
    if _WARM:
        return
    import scipy.optimize  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import torch  # noqa: F401

    from napari_chromosome_sort.classification.models._torchvision_compat import import_torchvision

    import_torchvision()
    _WARM = True


# ----------------------------------------------------------------------------- trained models
class TrainedModels:
    """Model files trained (or imported) in this napari session, oldest first; widgets that
    offer models (Predict) listen, so a model just made can be used at once."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.kinds: dict[str, str] = {}
        self._listeners: list[Callable[[str], None]] = []

    def listen(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(path)`` whenever a model is added."""
        self._listeners.append(callback)

    def title(self, path: str) -> str:
        """How a model is offered: "trained here: wt.safetensors"."""
        return f"{self.kinds.get(str(path), 'trained here')}: {Path(path).name}"

    def add(self, path: str, kind: str = "trained here") -> None:
        """Offer ``path`` (newest last) and tell the listeners."""
        path = str(path)
        self.kinds[path] = kind
        if path in self.paths:
            self.paths.remove(path)
        self.paths.append(path)
        for callback in list(self._listeners):
            try:
                callback(path)
            except RuntimeError:  # the listening widget was closed (Qt object deleted)
                self._listeners.remove(callback)


TRAINED_MODELS = TrainedModels()
