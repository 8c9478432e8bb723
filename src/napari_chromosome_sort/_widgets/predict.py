"""Predict and explain: classes, probabilities and Grad-CAM for a spread or a folder of spreads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_chromosome_sort._sample_data import bundled_model_path
from napari_chromosome_sort._widgets._common import (
    TRAINED_MODELS,
    LayerPicker,
    ScrollDock,
    class_colours,
    class_legend,
    colormap_from_mapping,
    fit_table_to_rows,
    label_at,
    layer_image,
    report_error,
    rgb_pixmap,
    start_worker,
    sync_features,
    warm_imports,
    with_index,
)
from napari_chromosome_sort._widgets._objects import review_of
from napari_chromosome_sort._widgets.gradcam_layer import gradcam_layer_of, show_gradcam
from napari_chromosome_sort._widgets.review import ReviewSection
from napari_chromosome_sort.progress import Progress

AUTO = "(segment automatically)"
OUTLINE = 2  # class outline thickness (screen pixels) while the Grad-CAM map is shown
TOGGLE_KEY = "g"  # on the classes layer: Grad-CAM with outlines <-> class colours filled
PANEL_SIDE = 200  # the clicked chromosome's crop and Grad-CAM
BUNDLED_MODEL = "bundled wild-type model (A/B/C)"
MODEL_FILE = "model file below"


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


def predict_job(model_path: str, image: np.ndarray, segmentation=None):
    """Worker generator: load the model, segment (unless ``segmentation`` is given), classify
    and explain with Grad-CAM, reporting each step and each chunk of Grad-CAM (a Cancel takes
    effect at the next report; nothing is shown or written for a cancelled run). Returns
    ``(model, prediction)``."""
    from dataclasses import replace

    from napari_chromosome_sort.classification.gradcam import spread_gradcam_steps
    from napari_chromosome_sort.classification.models.model_io import load_model
    from napari_chromosome_sort.classification.predict import predict_spread
    from napari_chromosome_sort.progress import relay

    yield Progress(0, 3, "Loading the model…")
    model = load_model(model_path)
    if segmentation is None:
        from napari_chromosome_sort.files.io import require_contrast
        from napari_chromosome_sort.segmentation import segment_spread

        yield Progress(1, 3, "Segmenting the spread…")
        require_contrast(image)
        segmentation = segment_spread(image)
    n = int((segmentation.objects["status"] == "chromosome").sum())
    yield Progress(2, 3 + n, f"Classifying {n} chromosomes…")
    prediction = predict_spread(model, image, segmentation=segmentation)
    if not prediction.crops:
        return model, replace(prediction, gradcam_map=np.zeros(image.shape[:2], np.float32))
    n = len(prediction.crops)
    index = {name: i for i, name in enumerate(model.classes)}
    heat = yield from relay(
        spread_gradcam_steps(
            model, prediction.crops, [index[c] for c in prediction.table["class"]]
        ),
        lambda report: Progress(3 + report.step, 3 + n, f"Explaining: {report.message}"),
    )
    return model, replace(prediction, gradcam_map=heat)


def folder_job(folder: str, model_path: str, out_dir: str):
    """Worker generator: the core batch run over a folder of spreads (in this process);
    returns its :class:`.BatchResult`."""
    from napari_chromosome_sort.batch import run_batch

    return (yield from run_batch(folder, model_path, out_dir, scheduler="serial"))


def _objects_of(layer) -> str | None:
    """The image layer name an objects layer from Segment spread belongs to (else None)."""
    meta = layer.metadata.get("chromosort", {}) if isinstance(layer, Labels) else {}
    return meta.get("image_layer") if meta.get("kind") == "segmentation" else None


class PredictWidget(QWidget):
    """Load a model, classify the chromosomes of a spread and show why (Grad-CAM)."""

    def __init__(self, napari_viewer):
        super().__init__()
        from magicgui.widgets import FileEdit

        self.viewer = napari_viewer
        self.worker = None
        self.model = None
        self.prediction = None
        self.layer = None
        self.image_layer_used = None

        self.model_choice = QComboBox()
        self.model_choice.setToolTip(
            "Which classifier calls the chromosomes: the bundled wild-type model (A/B/C, trained "
            "on the wild-type crops of Ikemoto et al. 2022), a model trained since napari "
            "started, or a file"
        )
        self.model_file = FileEdit(mode="r", filter="*.safetensors")
        self.model_file.native.setToolTip("A model file saved by 'Train classifier'")
        self._fill_model_choice()
        self.model_file.changed.connect(lambda *_: self._select_model(MODEL_FILE))
        self.import_button = QPushButton("Import published model (.pth)…")
        self.import_button.setToolTip(
            "Use a plain torchvision model file, such as the published SqueezeNet of Ikemoto et "
            "al. 2022: name its classes in output order; it is converted once and offered above"
        )
        self.import_button.clicked.connect(self._choose_published)
        TRAINED_MODELS.listen(self._on_model_trained)
        self.image_picker = LayerPicker(napari_viewer, (Image,))
        self.objects_picker = LayerPicker(napari_viewer, (Labels,), allow_none=AUTO)
        self.objects_picker.combo.setToolTip(
            "Use a reviewed/edited objects layer from 'Segment spread', or segment automatically"
        )
        self.image_picker.combo.setToolTip("The spread whose chromosomes are classified")
        self.run_button = QPushButton("Predict spread")
        self.run_button.setToolTip(
            "Classify every kept chromosome of the spread and show where the network looked"
        )
        self.folder = FileEdit(mode="d")
        self.folder.native.setToolTip("A folder of spreads (sub-folders = samples)")
        self.out_folder = FileEdit(mode="d")
        self.out_folder.native.setToolTip("Where the batch tables, plots and maps are written")
        self.folder_button = QPushButton("Predict folder")
        self.folder_button.setToolTip(
            "Segment and classify every spread of the folder; tables and plots per sample"
        )
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running prediction; nothing is shown or written")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.distribution = QTableWidget(0, 3)
        self.distribution.setHorizontalHeaderLabels(["class", "count", "%"])
        fit_table_to_rows(self.distribution)
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.legend.setToolTip("Class colours of the predicted-class layer and its labels")
        self.cam_note = QLabel(
            "Grad-CAM (blue, colour bar at the top right of the spread): where the network "
            "looked for its call on each chromosome, clear = ignored, light blue = mattered "
            f"most; the class colours are the outlines. Press {TOGGLE_KEY.upper()} on the "
            "classes layer to switch to the class colours filled in."
        )
        self.cam_note.setWordWrap(True)
        self.cam_note.setVisible(False)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("Save the table of chromosomes, classes and probabilities")
        self.export_button.setEnabled(False)
        self.crop_view = QLabel()
        self.crop_view.setMinimumSize(PANEL_SIDE, PANEL_SIDE)
        self.cam_view = QLabel()
        self.cam_view.setMinimumSize(PANEL_SIDE, PANEL_SIDE)
        self.detail = QLabel("Click a chromosome to see its crop, probabilities and Grad-CAM.")
        self.detail.setWordWrap(True)
        self.review = ReviewSection(self)

        form = QFormLayout()
        form.addRow("Model", self.model_choice)
        form.addRow("Model file", self.model_file.native)
        form.addRow("", self.import_button)
        form.addRow("Image", self.image_picker.combo)
        form.addRow("Objects", self.objects_picker.combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        folder_form = QFormLayout()
        folder_form.addRow("Spreads folder", self.folder.native)
        folder_form.addRow("Output folder", self.out_folder.native)
        layout.addLayout(folder_form)
        layout.addWidget(self.folder_button)
        layout.addWidget(self.cancel_button)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(QLabel("<b>Type distribution</b>"))
        layout.addWidget(self.legend)
        layout.addWidget(self.distribution)
        layout.addWidget(self.cam_note)
        layout.addWidget(self.export_button)
        views = QHBoxLayout()
        views.addWidget(self.crop_view)
        views.addWidget(self.cam_view)
        layout.addLayout(views)
        layout.addWidget(self.detail)
        layout.addWidget(self.review)
        layout.addStretch(1)

        self.image_picker.combo.currentIndexChanged.connect(self._objects_for_image)
        napari_viewer.layers.events.inserted.connect(self._objects_for_image)
        self._objects_for_image()
        self.run_button.clicked.connect(self.run)
        self.folder_button.clicked.connect(self.run_folder)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button.clicked.connect(lambda: self.export_csv(None))

    def _objects_for_image(self, *_):
        """Offer the chosen image's reviewed objects layer (from Segment spread) when there is
        one, else segment automatically; a choice for this image is left as it is."""
        image = self.image_picker.layer()
        if image is None:
            return
        current = self.objects_picker.layer()
        reviewed = [layer for layer in self.viewer.layers if _objects_of(layer) == image.name]
        if reviewed and current not in reviewed:
            self.objects_picker.set_layer(reviewed[-1])
        elif current is not None and _objects_of(current) not in (None, image.name):
            self.objects_picker.combo.setCurrentText(AUTO)  # another spread's objects

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        """Is a prediction running?"""
        return self.worker is not None

    def _set_running(self, running: bool):
        self.run_button.setEnabled(not running)
        self.folder_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def cancel(self):
        """Stop the running job at its next progress report."""
        if self.worker is not None:
            self.worker.quit()
            self.status.setText("Cancelling…")

    def _on_abort(self):
        self.status.setText("Cancelled: nothing was shown or written for the unfinished spread.")
        show_info("Prediction cancelled.")

    # ------------------------------------------------------------------ model choice
    def _fill_model_choice(self) -> None:
        self.model_choice.clear()
        self.model_choice.addItem(BUNDLED_MODEL, str(bundled_model_path()))
        for path in TRAINED_MODELS.paths:
            self.model_choice.addItem(TRAINED_MODELS.title(path), path)
        self.model_choice.addItem(MODEL_FILE, None)

    def _select_model(self, text: str) -> None:
        self.model_choice.setCurrentIndex(max(self.model_choice.findText(text), 0))

    def _on_model_trained(self, path: str) -> None:
        """A model just saved by Train classifier (or imported) is offered here and chosen."""
        self._fill_model_choice()
        self._select_model(TRAINED_MODELS.title(path))

    def _choose_published(self) -> None:
        from qtpy.QtWidgets import QInputDialog

        from napari_chromosome_sort.classification.models.registry import BACKBONES

        path, _ = QFileDialog.getOpenFileName(self, "Published model", "", "PyTorch (*.pth *.pt)")
        if not path:
            return
        classes, ok = QInputDialog.getText(
            self, "Classes", "Class names in the model's output order:", text="A,B,C"
        )
        if not ok:
            return
        names = list(BACKBONES)
        backbone, ok = QInputDialog.getItem(
            self, "Network", "The model's network:", names, 0, False
        )
        if ok:
            self.import_published(path, classes, backbone)

    def import_published(self, path, classes: str, backbone: str = "squeezenet1_1") -> str | None:
        """Convert a plain torchvision ``state_dict`` (read without unpickling) into a model file
        in the user cache, offer it and choose it; returns its path (None after an error)."""
        from napari_chromosome_sort.classification.models.fast_inference import user_cache_dir
        from napari_chromosome_sort.classification.models.model_io import (
            import_state_dict,
            save_model,
        )

        names = [c.strip() for c in str(classes).split(",") if c.strip()]
        try:
            model = import_state_dict(path, names, backbone)
            folder = user_cache_dir() / "imported"
            folder.mkdir(parents=True, exist_ok=True)
            out = save_model(model, folder / f"{Path(path).stem}.safetensors")
        except Exception as error:  # noqa: BLE001 - shown to the user
            report_error(error, "Import model")
            return None
        TRAINED_MODELS.add(str(out), kind="imported")
        self.status.setText(f"Imported {Path(path).name} as {out}")
        return str(out)

    def _model_path(self) -> str | None:
        chosen = self.model_choice.currentData()
        if chosen:
            return str(chosen)
        path = Path(str(self.model_file.value))
        if not path.is_file():
            show_error(
                f"Predict: model file {path} does not exist: choose a model file, a model "
                "trained since napari started or the bundled wild-type model."
            )
            return None
        return str(path)

    def run(self):
        """Classify the chosen spread in a worker thread and show the layers when done."""
        if self.running:
            return
        model_path = self._model_path()
        image_layer = self.image_picker.layer()
        if model_path is None:
            return
        if image_layer is None:
            show_error("Predict: open a spread image first.")
            return
        objects = self.objects_picker.layer()
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
        self._set_running(True)
        self.worker = start_worker(
            predict_job,
            model_path,
            layer_image(image_layer),
            segmentation,
            on_yield=self._on_progress,
            on_return=self._show,
            on_finish=self._on_finish,
            on_abort=self._on_abort,
            what="Predict",
        )

    def run_folder(self):
        """Segment, classify and explain every spread of a folder (a batch run)."""
        if self.running:
            return
        model_path = self._model_path()
        folder = Path(str(self.folder.value))
        out_dir = Path(str(self.out_folder.value))
        if model_path is None:
            return
        if not folder.is_dir() or str(self.folder.value) in ("", "."):
            show_error("Predict folder: choose an existing folder of spreads.")
            return
        if str(self.out_folder.value) in ("", "."):
            out_dir = folder.parent / f"{folder.name}_chromosort"
        self._set_running(True)
        self.worker = start_worker(
            folder_job,
            str(folder),
            model_path,
            str(out_dir),
            on_yield=self._on_progress,
            on_return=lambda result: self._folder_done(out_dir, result),
            on_finish=self._on_finish,
            on_abort=self._on_abort,
            what="Predict folder",
        )

    def _on_progress(self, report):
        self.progress.setMaximum(max(int(report.total), 1))
        self.progress.setValue(int(report.step))
        self.status.setText(report.message)

    def _on_finish(self):
        self.worker = None
        self._set_running(False)

    def _folder_done(self, out_dir, result):
        failures = getattr(result, "failures", {}) or {}
        self.status.setText(
            f"Folder done: tables and plots in <b>{out_dir}</b>"
            + (f"; {len(failures)} spread(s) failed" if failures else "")
        )
        show_info(f"Batch predictions written to {out_dir}")

    # ------------------------------------------------------------------ display
    def _show(self, result):
        self.model, self.prediction = result
        prediction = self.prediction
        image_layer = self.image_layer_used
        classes = list(self.model.classes)
        colours = class_colours(classes)
        table = prediction.table.copy()
        objects = prediction.segmentation.objects
        if "centroid_y" not in table and "centroid_y" in objects:
            table = table.merge(
                objects[["label", "centroid_y", "centroid_x"]], on="label", how="left"
            )
        labels = np.asarray(prediction.segmentation.labels)
        kept = np.where(np.isin(labels, table["label"].to_numpy()), labels, 0).astype(np.int32)
        name = f"{image_layer.name} predicted classes"
        features = with_index(table)
        colormap = colormap_from_mapping(
            dict(zip(table["label"].astype(int), table["class"].astype(str), strict=True)), colours
        )
        placement = {"scale": image_layer.scale[-2:], "translate": image_layer.translate[-2:]}
        segmentation = prediction.segmentation
        meta = {
            "chromosort": {
                "kind": "prediction",
                "image_layer": image_layer.name,
                "polarity": segmentation.polarity,
                "denoised": bool(segmentation.stats.get("denoised")),
            }
        }
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = kept
            layer.features = features
        else:
            layer = self.viewer.add_labels(
                kept, name=name, features=features, opacity=1.0, metadata=meta, **placement
            )
            layer.contour = OUTLINE  # class outlines: the map and the morphology stay visible
            layer.mouse_drag_callbacks.append(self._on_click)
            review_of(self.viewer, layer).bind(TOGGLE_KEY, lambda _layer: self.toggle_view())
            review_of(self.viewer, layer).describe(TOGGLE_KEY, "Grad-CAM ↔ class colours")
        layer.colormap = colormap
        self.layer = layer

        if prediction.gradcam_map is not None:
            show_gradcam(self.viewer, image_layer, prediction.gradcam_map, kept, placement)
            self.cam_note.setVisible(True)

        text_name = f"{image_layer.name} class names"
        # beside the object (its box's top right corner), not on the chromosome
        corner = ["bbox_y0", "bbox_x1"] if "bbox_x1" in table else ["centroid_y", "centroid_x"]
        coords = table[corner].to_numpy(float) if len(table) else None
        point_features = pd.DataFrame({"class": table["class"].astype(str)})
        text = {"string": "{class}", "color": "white", "size": 9, "anchor": "upper_left"}
        if text_name in self.viewer.layers:
            self.viewer.layers.remove(text_name)
        if coords is not None:
            self.viewer.add_points(
                coords,
                name=text_name,
                features=point_features,
                text=text,
                size=5,
                face_color=[colours.get(c, "#ffffff") for c in point_features["class"]],
                border_width=0,
                **placement,
            )
        self.viewer.layers.selection.active = layer
        self._show_distribution(table, classes)
        self.legend.setText(class_legend(classes))
        self.export_button.setEnabled(True)
        self.status.setText(
            f"{len(table)} chromosomes classified with {getattr(self.model, 'backbone_name', '')}"
        )

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
        """Show one object's crop, probabilities and Grad-CAM (for its predicted class)."""
        if self.prediction is None:
            return
        table = self.prediction.table
        match = table[table["label"].astype(int) == int(label)]
        if match.empty:
            return
        row = match.iloc[0]
        crop = self._crop_of(label)
        probabilities = "<br>".join(
            f"{c}: {100 * float(row.get(f'p_{c}', np.nan)):.1f}%" for c in self.model.classes
        )
        self.detail.setText(f"Object {label}: <b>{row['class']}</b><br>{probabilities}")
        if crop is None:
            return
        self.crop_view.setPixmap(rgb_pixmap(crop.pixels, PANEL_SIDE))
        try:
            from napari_chromosome_sort.classification.gradcam import gradcam
            from napari_chromosome_sort.display.cam_display import masked_to_objects, overlay

            classes = list(self.model.classes)
            heat = gradcam(self.model, crop.pixels, class_index=classes.index(row["class"]))
            labels = np.asarray(self.prediction.segmentation.labels)
            mask = crop.geometry.from_image((labels == int(label)).astype(np.float32)) > 0.5
            if mask.shape == heat.shape:  # the chromosome only, as on the spread
                heat = masked_to_objects(heat, mask)
            self.cam_view.setPixmap(rgb_pixmap(overlay(crop.pixels, heat), PANEL_SIDE))
        except Exception as error:  # noqa: BLE001 - Grad-CAM is informative only
            self.cam_view.setText(f"Grad-CAM unavailable: {error}")

    def _crop_of(self, label: int):
        crops = getattr(self.prediction, "crops", None) or []
        for crop in crops:
            if int(getattr(crop, "label", -1)) == int(label):
                return crop
        table = self.prediction.table
        index = table.index[table["label"].astype(int) == int(label)]
        if len(index) and len(crops) == len(table):
            return crops[int(np.flatnonzero(table["label"].astype(int) == int(label))[0])]
        return None


class PredictDock(ScrollDock):
    """The PredictWidget in a scroll area: what napari docks (Plugins menu)."""

    def __init__(self, napari_viewer):
        super().__init__(PredictWidget(napari_viewer))
