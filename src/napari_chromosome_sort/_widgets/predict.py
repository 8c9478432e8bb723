"""Predict and explain: classes, probabilities and Grad-CAM for a spread or a folder of spreads.

The spread runs through the one prediction generator of the core
(:func:`.predict.predict_spread_steps`, as ``chromosort predict`` and batch run it) in a thread
worker, which also computes every array the layers show (:func:`.calls_layers.calls_data`); the
GUI thread only hands them to napari, so the window never waits on a computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from magicgui.widgets import ComboBox
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_chromosome_sort._widgets.predicting.calls_layers import (
    OUTLINE,
    CallsData,
    prediction_data,
    show_calls_steps,
)
from napari_chromosome_sort._widgets.predicting.folder_results import FolderSection
from napari_chromosome_sort._widgets.predicting.gradcam_layer import gradcam_layer_of
from napari_chromosome_sort._widgets.predicting.model_choice import ModelChoice
from napari_chromosome_sort._widgets.predicting.review import ReviewSection
from napari_chromosome_sort._widgets.session import session_of
from napari_chromosome_sort._widgets.shared.collector import set_aside
from napari_chromosome_sort._widgets.shared.docks import ScrollDock, fit_table_to_rows, rgb_pixmap
from napari_chromosome_sort._widgets.shared.forms import push_button
from napari_chromosome_sort._widgets.shared.layers import (
    class_legend,
    label_at,
    layer_image,
    run_steps,
    sync_features,
)
from napari_chromosome_sort._widgets.shared.objects import review_of
from napari_chromosome_sort._widgets.shared.workers import start_worker, warm_imports
from napari_chromosome_sort.progress import Progress, relay

AUTO = "(segment automatically)"
TOGGLE_KEY = "g"  # on the classes layer: Grad-CAM with outlines <-> class colours filled
PANEL_SIDE = 200  # the clicked chromosome's crop and Grad-CAM
#: pause between two painting steps: a zero-delay timer runs the next step in the same pass of
#: the event loop, before the window redraws or answers; this lets both happen in between
PAINT_PAUSE_MS = 15
CAM_NOTE = (
    "Grad-CAM (blue, colour bar at the top right of the spread): where the network looked for "
    "its call on each chromosome, clear = ignored, light blue = mattered most; the class "
    f"colours are the outlines. Press {TOGGLE_KEY.upper()} on the classes layer to switch to "
    "the class colours filled in."
)


@dataclass
class PredictResult:
    """What a Predict run hands to the GUI thread: the model, the core's prediction and the
    layers' data."""

    model: object
    prediction: object
    data: CallsData
    model_key: tuple | None = None  # the file the model was loaded from (see model_key)


def _segmentation_from_layer(layer):
    """A core Segmentation built from an (possibly hand-edited) objects Labels layer."""
    from napari_chromosome_sort.segmentation import Segmentation, SegmentationParams

    features = sync_features(layer)
    meta = layer.metadata.get("chromosort", {})
    params = meta.get("params") or {}
    known = {k: v for k, v in params.items() if k in SegmentationParams.__dataclass_fields__}
    objects = features.drop(columns=["index"], errors="ignore")
    return Segmentation(
        labels=np.asarray(layer.data, dtype=np.int32),
        objects=objects,
        polarity=meta.get("polarity") or "dark_on_light",
        params=SegmentationParams(**known),
        stats={"denoised": bool(meta.get("denoised"))},
    )


def model_key(path: str) -> tuple:
    """What identifies a model file's content for reuse: its path, size and change time."""
    stat = Path(path).stat()
    return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns


def predict_job(
    model_path: str, image: np.ndarray, image_name: str, segmentation=None, loaded=None
):
    """Worker generator: load the model (``loaded``: the model of this file loaded before, kept
    with its ONNX Runtime session), then the core's prediction of the spread with Grad-CAM
    (:func:`.predict.predict_spread_steps`, its reports passed on; a Cancel takes effect at the
    next one and nothing is shown), then the layers' data. Returns a :class:`PredictResult`."""
    from napari_chromosome_sort.classification.models.model_io import load_model
    from napari_chromosome_sort.classification.predict import predict_spread_steps

    yield Progress(0, 1, "Loading the model…")
    model = loaded if loaded is not None else load_model(model_path)
    prediction = yield from relay(
        predict_spread_steps(model, image, gradcam=True, segmentation=segmentation),
        lambda report: Progress(report.step + 1, report.total + 1, report.message),
    )
    data = prediction_data(image_name, model.classes, prediction)
    return PredictResult(model, prediction, data, model_key(model_path))


def layer_combo(viewer, kind, none: str | None = None, tooltip: str = "") -> ComboBox:
    """A magicgui combo box of the viewer's layers of type ``kind`` (first ``none``, meaning
    no layer, when given), kept in step with the layer list."""

    def choices(_widget) -> list:
        found = [(layer.name, layer) for layer in viewer.layers if isinstance(layer, kind)]
        return [(none, None), *found] if none else found

    combo = ComboBox(choices=choices, tooltip=tooltip)
    events = viewer.layers.events
    for event in (events.inserted, events.removed, events.reordered):
        event.connect(lambda *_: combo.reset_choices())
    return combo


def _objects_of(layer) -> str | None:
    """The image layer name an objects layer from Segment spread belongs to (else None)."""
    meta = layer.metadata.get("chromosort", {}) if isinstance(layer, Labels) else {}
    return meta.get("image_layer") if meta.get("kind") == "segmentation" else None


class PredictWidget(QWidget):
    """Load a model, classify the chromosomes of a spread and show why (Grad-CAM)."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.session = session_of(napari_viewer)
        self.worker = None
        self._painting = None
        self.model = None
        self.model_loaded_from = None  # model_key of the file self.model is, None once retrained
        self.prediction = None
        self.layer = None
        self.image_layer_used = None
        self.models = ModelChoice(napari_viewer, self)
        self.model_choice, self.model_file = self.models.combo, self.models.file
        self.image_picker = layer_combo(
            napari_viewer, Image, tooltip="The spread whose chromosomes are classified"
        )
        self.objects_picker = layer_combo(
            napari_viewer,
            Labels,
            AUTO,
            "Use a reviewed/edited objects layer from 'Segment spread', or segment automatically",
        )
        self.run_button = push_button(
            "Predict spread",
            "Classify every kept chromosome of the spread and show where the network looked",
            self.run,
        )
        self.batch = FolderSection(self)
        self.cancel_button = push_button(
            "Cancel", "Stop the running prediction; nothing is shown or written", self.cancel
        )
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self._make_results()
        self.review = ReviewSection(self)
        self._lay_out()
        self.image_picker.changed.connect(self._objects_for_image)
        napari_viewer.layers.events.inserted.connect(self._objects_for_image)
        self._objects_for_image()

    def _make_results(self) -> None:
        """The type distribution, legend, Grad-CAM note, export and the clicked object."""
        self.distribution = QTableWidget(0, 3)
        self.distribution.setHorizontalHeaderLabels(["class", "count", "%"])
        fit_table_to_rows(self.distribution)
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.legend.setToolTip("Class colours of the predicted-class layer and its labels")
        self.cam_note = QLabel(CAM_NOTE)
        self.cam_note.setWordWrap(True)
        self.cam_note.setVisible(False)
        self.export_button = push_button(
            "Export CSV…",
            "Save the table of chromosomes, classes and probabilities",
            lambda: self.export_csv(None),
        )
        self.export_button.setEnabled(False)
        self.crop_view = QLabel()
        self.crop_view.setMinimumSize(PANEL_SIDE, PANEL_SIDE)
        self.cam_view = QLabel()
        self.cam_view.setMinimumSize(PANEL_SIDE, PANEL_SIDE)
        self.detail = QLabel("Click a chromosome to see its crop, probabilities and Grad-CAM.")
        self.detail.setWordWrap(True)

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.addRow("Model", self.model_choice)
        form.addRow("Model file", self.model_file.native)
        form.addRow("", self.models.import_button)
        form.addRow("Image", self.image_picker.native)
        form.addRow("Objects", self.objects_picker.native)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addWidget(self.batch)
        for widget in (self.cancel_button, self.progress, self.status):
            layout.addWidget(widget)
        layout.addWidget(QLabel("<b>Type distribution</b>"))
        for widget in (self.legend, self.distribution, self.cam_note, self.export_button):
            layout.addWidget(widget)
        views = QHBoxLayout()
        views.addWidget(self.crop_view)
        views.addWidget(self.cam_view)
        layout.addLayout(views)
        layout.addWidget(self.detail)
        layout.addWidget(self.review)
        layout.addStretch(1)

    def _objects_for_image(self, *_):
        """Offer the chosen image's reviewed objects layer (from Segment spread) when there is
        one, else segment automatically; a choice for this image is left as it is."""
        image = self.image_picker.value
        if image is None:
            return
        self.objects_picker.reset_choices()
        current = self.objects_picker.value
        reviewed = [layer for layer in self.viewer.layers if _objects_of(layer) == image.name]
        if reviewed and current not in reviewed:
            self.objects_picker.value = reviewed[-1]
        elif current is not None and _objects_of(current) not in (None, image.name):
            self.objects_picker.value = None  # another spread's objects

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        """Is a prediction running (or its layers being drawn)?"""
        return self.worker is not None or self._painting is not None

    def _set_running(self, running: bool):
        self.run_button.setEnabled(not running)
        self.batch.button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def cancel(self):
        """Stop the running job at its next progress report."""
        if self.worker is not None:
            self.worker.quit()
            self.status.setText("Cancelling…")

    def _on_abort(self):
        self.status.setText("Cancelled: nothing was shown or written for the unfinished spread.")
        show_info("Prediction cancelled.")

    def _model_path(self) -> str | None:
        return self.models.path()

    def import_published(self, path, classes: str, backbone: str = "squeezenet1_1") -> str | None:
        """Convert and offer a published model (see :meth:`.ModelChoice.import_published`)."""
        out = self.models.import_published(path, classes, backbone)
        if out is not None:
            self.status.setText(f"Imported {path} as {out}")
        return out

    def start(self, job, *args, on_return, what: str) -> None:
        """Run the worker generator ``job(*args)`` with this widget's progress and Cancel."""
        self._set_running(True)
        self.worker = start_worker(
            job,
            *args,
            on_yield=self._on_progress,
            on_return=on_return,
            on_finish=self._on_finish,
            on_abort=self._on_abort,
            what=what,
        )

    def run(self):
        """Classify the chosen spread in a worker thread and show the layers when done."""
        if self.running:
            return
        model_path = self._model_path()
        image_layer = self.image_picker.value
        if model_path is None:
            return
        if image_layer is None:
            show_error("Predict: open a spread image first.")
            return
        objects = self.objects_picker.value
        segmentation = None
        if objects is not None:
            try:
                segmentation = _segmentation_from_layer(objects)
            except Exception as error:  # noqa: BLE001 - shown to the user
                show_error(f"Predict: cannot use objects layer {objects.name}: {error}")
                return
        self.image_layer_used = image_layer
        self.review.reset()
        warm_imports()
        set_aside(self.viewer)  # no full garbage collection while the layers are added
        loaded = self.model if self.model_loaded_from == model_key(model_path) else None
        args = (model_path, layer_image(image_layer), image_layer.name, segmentation, loaded)
        self.start(predict_job, *args, on_return=self._show, what="Predict")

    def _on_progress(self, report):
        self.progress.setMaximum(max(int(report.total), 1))
        self.progress.setValue(int(report.step))
        self.status.setText(report.message)

    def _on_finish(self):
        self.worker = None
        self._set_running(self.running)

    # ------------------------------------------------------------------ display
    def _show(self, result: PredictResult) -> None:
        """Hand a finished prediction's layers to napari (GUI thread: no computation)."""
        self.model, self.prediction = result.model, result.prediction
        self.model_loaded_from = result.model_key
        self.show_data(self.image_layer_used, result.data)
        self.status.setText(
            f"{len(result.data.features)} chromosomes classified with "
            f"{getattr(self.model, 'backbone_name', '')}"
        )
        for warning in result.prediction.warnings:
            show_warning(f"Predict: {warning}")
            self.status.setText(f"{self.status.text()}<br><b>Warning</b>: {warning}")

    def show_data(self, image_layer, data: CallsData, staged: bool = True) -> None:
        """Show the calls ``data`` of ``image_layer``: layers, distribution, legend; tell the
        session's listeners (Readout) that the calls changed. ``staged``: in short steps, one
        per turn of the event loop, so the window draws and answers in between (``running``
        until the last); else all at once. A spread still being painted is finished first."""
        if self._painting is not None:
            run_steps(self._painting)
        self.image_layer_used = image_layer
        self._painting = self._paint_steps(image_layer, data)
        if staged:
            self._paint_next(self._painting)
            return
        run_steps(self._painting)
        self._painting = None

    def _paint_next(self, steps) -> None:
        if steps is not self._painting:  # finished at once by a later show_data
            return
        try:
            next(steps)
        except StopIteration:
            self._painting = None
            self._set_running(self.running)
            return
        QTimer.singleShot(PAINT_PAUSE_MS, lambda: self._paint_next(steps))

    def _paint_steps(self, image_layer, data: CallsData):
        layer, made = yield from show_calls_steps(self.viewer, image_layer, data)
        yield
        if made:
            layer.mouse_drag_callbacks.append(self._on_click)
            review = review_of(self.viewer, layer)
            review.bind(TOGGLE_KEY, lambda _layer: self.toggle_view())
            review.describe(TOGGLE_KEY, "Grad-CAM ↔ class colours")
        self.layer = layer
        self.cam_note.setVisible(data.cam is not None)
        if self.viewer.layers.selection.active is not layer:
            self.viewer.layers.selection.active = layer
        self._show_distribution(data.features, data.classes)
        self.legend.setText(class_legend(data.classes))
        self.export_button.setEnabled(True)
        self.session.calls_changed.emit(layer.name)

    def toggle_view(self) -> None:
        """Switch between the Grad-CAM map with class outlines and the class colours filled."""
        layer = self.layer
        if layer is None:
            return
        cam = gradcam_layer_of(self.viewer, self.image_layer_used)
        showing_map = layer.contour > 0
        layer.contour = 0 if showing_map else OUTLINE
        layer.opacity = 0.5 if showing_map else 1.0
        if cam is not None:
            cam.visible = not showing_map

    def _show_distribution(self, table: pd.DataFrame, classes: list[str]):
        counts = table["class"].value_counts()
        total = max(len(table), 1)
        self.distribution.setRowCount(len(classes))
        for row, cls in enumerate(classes):
            n = int(counts.get(cls, 0))
            for column, value in enumerate((cls, str(n), f"{100 * n / total:.1f}")):
                self.distribution.setItem(row, column, QTableWidgetItem(value))
        fit_table_to_rows(self.distribution)

    def table(self) -> pd.DataFrame | None:
        """The per-chromosome table of the prediction shown, or None."""
        if self.layer is None or not len(self.layer.features):
            return None
        return self.layer.features.drop(columns=["index"], errors="ignore")

    def export_csv(self, path: str | None = None) -> str | None:
        """Write the per-chromosome predictions (class, p_<class>, bbox...) to a CSV file."""
        table = self.table()
        if table is None:
            show_error("Export: run a prediction first.")
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save predictions", "", "CSV (*.csv)")
            if not path:
                return None
        table.to_csv(path, index=False)
        show_info(f"Predictions saved to {path}")
        return str(path)

    # ------------------------------------------------------------------ details
    def _on_click(self, layer, event):
        if layer.mode != "pan_zoom":
            return
        label = label_at(layer, event.position)
        if label:
            self.show_object(label)

    def show_object(self, label: int):
        """Show one object's crop, probabilities and Grad-CAM (for its class), all from the
        prediction: nothing is computed by the network here."""
        from napari_chromosome_sort.display.cam_display import masked_to_objects, overlay

        table = self.table()
        if table is None:
            return
        match = table[table["label"].astype(int) == int(label)]
        if match.empty:
            return
        row = match.iloc[0]
        classes = [c[2:] for c in table.columns if str(c).startswith("p_")]
        probabilities = "<br>".join(f"{c}: {100 * float(row[f'p_{c}']):.1f}%" for c in classes)
        self.detail.setText(f"Object {label}: <b>{row['class']}</b><br>{probabilities}")
        crop, heat = (None, None) if self.prediction is None else self.prediction.crop_map(label)
        if crop is None:  # a spread of a folder run: its crops are not kept
            return
        self.crop_view.setPixmap(rgb_pixmap(crop.pixels, PANEL_SIDE))
        if heat is None:
            self.cam_view.setText("No Grad-CAM for this call.")
            return
        labels = np.asarray(self.prediction.segmentation.labels)
        mask = crop.geometry.from_image((labels == int(label)).astype(np.float32)) > 0.5
        if mask.shape == heat.shape:  # the chromosome only, as on the spread
            heat = masked_to_objects(heat, mask)
        self.cam_view.setPixmap(rgb_pixmap(overlay(crop.pixels, heat), PANEL_SIDE))


class PredictDock(ScrollDock):
    """The PredictWidget in a scroll area: what napari docks (Plugins menu)."""

    def __init__(self, napari_viewer):
        super().__init__(PredictWidget(napari_viewer))
