"""Review least sure: the correction loop of Predict and explain, over
:class:`..classification.corrections.CorrectionSession`.

After Predict, the calls are walked from the least to the most confident (by default the
called classes in turn, the least sure of each first, so that a spread's rare calls are met
early); the view zooms to each; a number key (as in Label chromosomes) sets its class, saved
to the dataset at once, and moves on; 0 marks an object that is not a single chromosome (a
piece, a cluster, debris), which then leaves the calls and the readout. Retrain refits the head
on cached features and repaints the spread's calls, Grad-CAM and type distribution.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from napari.utils.notifications import show_error
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from napari_chromosome_sort._widgets.label import class_keys_hint
from napari_chromosome_sort._widgets.predicting.calls_layers import (
    calls_data,
    calls_table,
    repaint_calls,
)
from napari_chromosome_sort._widgets.shared.docks import rgb_pixmap
from napari_chromosome_sort._widgets.shared.forms import chosen_path
from napari_chromosome_sort._widgets.shared.objects import review_of
from napari_chromosome_sort._widgets.shared.workers import report_error, start_worker
from napari_chromosome_sort.classification.training.corrections import CORRECTED, confidence
from napari_chromosome_sort.progress import Progress, relay

PREVIEW_SIDE = 240
REJECT_KEY = "0"
#: the walk's orders (validation: "Correcting the least sure" in docs/validation.md)
BY_CLASS = "called classes in turn"
OVERALL = "least sure overall"


def prepare_job(session):
    """Worker generator: the features of the spread's and the training crops."""
    yield from session.prepare()
    return session


def retrain_job(session, image_name: str):
    """Worker generator: retrain the head, then the spread's Grad-CAM for the new calls and the
    layers' data. Returns ``(model, crop maps, CallsData)``."""
    # torch: imported on the worker when a retrain runs, not when napari starts
    from napari_chromosome_sort.classification.gradcam import crop_gradcam_steps, paste_maps

    yield Progress(0, 2, "Retraining on the corrections…")
    table = yield from session.retrain()
    model = session.model
    crops = [session.crops[int(label)] for label in table["label"]]
    index = {name: i for i, name in enumerate(model.classes)}
    maps = []
    if crops:
        maps = yield from relay(
            crop_gradcam_steps(model, crops, [index[c] for c in table["class"]]),
            lambda report: Progress(1, 2, f"Explaining: {report.message}"),
        )
    segmentation = session.prediction.segmentation
    heat = paste_maps(crops, maps) if crops else None
    data = calls_data(
        image_name,
        model.classes,
        calls_table(table.copy(), segmentation.objects),
        segmentation.labels,
        heat,
        segmentation.polarity,
        bool(segmentation.stats.get("denoised")),
    )
    return model, maps, data


class ReviewSection(QGroupBox):
    """The "Review least sure" section of the Predict widget (``predict``)."""

    def __init__(self, predict):
        super().__init__("Review least sure")
        from magicgui.widgets import FileEdit

        self.predict = predict
        self.viewer = predict.viewer
        self.session = None
        self.current = 0
        self.skipped: set[int] = set()
        self.walk: list[int] = []  # the calls in the order they are visited, ranked once
        self.worker = None

        self.folder = FileEdit(mode="d", value=str(Path.home() / "chromosort_dataset"))
        self.folder.native.setToolTip(
            "Dataset folder (one sub-folder per class + manifest.csv) that receives every "
            "correction at once, with the spread and sample it came from"
        )
        self.training = FileEdit(mode="d")
        self.training.native.setToolTip(
            "The folder of crops the model was trained on (one sub-folder per class); empty: "
            "the folder recorded in the model, when it exists. Retrain learns from these + the "
            "dataset's crops"
        )
        self.order = QComboBox()
        self.order.addItems([BY_CLASS, OVERALL])
        self.order.setToolTip(
            "Called classes in turn: the least sure A call, B call, C call, then the next of "
            "each; after 20 corrections it brought every test spread's type shares within 5 "
            "points. Least sure overall: slightly more calls right after 5 to 10 corrections"
        )
        self.order.currentIndexChanged.connect(lambda _i: self.running or self._reorder())
        self.sample = QLineEdit()
        self.sample.setPlaceholderText("sample name (e.g. WT, mutant)")
        self.sample.setToolTip("The sample this spread belongs to, recorded with each correction")
        self.start_button = QPushButton("Review least sure")
        self.start_button.setToolTip(
            "Walk the calls from the least to the most confident, zoomed to each; a number key "
            "sets the class"
        )
        self.reject_button = QPushButton(f"Not a chromosome ({REJECT_KEY})")
        self.reject_button.setToolTip(
            "This object is not a single chromosome (a piece, a cluster, debris): leave it out of "
            "the calls, the type shares and the retraining"
        )
        self.next_button = QPushButton("Skip ▶")
        self.next_button.setToolTip("Keep this call and go to the next least sure")
        self.retrain_button = QPushButton("Retrain")
        self.retrain_button.setToolTip(
            "Refit the classifier on its training crops + the corrections (cached features, "
            "about a second) and call the spread again"
        )
        self.preview = QLabel()
        self.preview.setMinimumSize(PREVIEW_SIDE, PREVIEW_SIDE)
        self.info = QLabel("Predict a spread, then review its least sure calls.")
        self.info.setWordWrap(True)
        for button in (self.reject_button, self.next_button, self.retrain_button):
            button.setEnabled(False)

        form = QFormLayout()
        form.addRow("Dataset", self.folder.native)
        form.addRow("Training crops", self.training.native)
        form.addRow("Sample", self.sample)
        form.addRow("Order", self.order)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.reject_button)
        buttons.addWidget(self.next_button)
        buttons.addWidget(self.retrain_button)
        layout.addLayout(buttons)
        layout.addWidget(self.preview)
        layout.addWidget(self.info)
        self.start_button.clicked.connect(self.start)
        self.next_button.clicked.connect(self.skip)
        self.reject_button.clicked.connect(self.reject)
        self.retrain_button.clicked.connect(self.retrain)

    # ------------------------------------------------------------------ session
    def reset(self) -> None:
        """Forget the session (a new prediction is being made)."""
        self.session, self.current, self.skipped, self.walk = None, 0, set(), []
        self._enable(not self.running)

    @property
    def running(self) -> bool:
        """Is the features or retraining job running?"""
        return self.worker is not None

    def start(self) -> None:
        """Open a correction session on the prediction shown and go to its least sure call."""
        from napari_chromosome_sort.classification.training.corrections import (
            CorrectionSession,
        )
        from napari_chromosome_sort.files.dataset import CropDataset

        predict = self.predict
        if predict.prediction is None or predict.layer is None or self.running:
            show_error("Review least sure: predict a spread first.")
            return
        image = predict.image_layer_used
        try:
            dataset = CropDataset(
                Path(str(self.folder.value)), classes=tuple(predict.model.classes)
            )
            self.session = CorrectionSession(
                predict.model,
                predict.prediction,
                dataset,
                spread=str(getattr(image.source, "path", None) or image.name),
                sample=self.sample.text().strip() or image.name,
                training_folder=chosen_path(self.training),
            )
        except Exception as error:  # noqa: BLE001 - shown to the user
            report_error(error, "Review least sure")
            return
        self.current, self.skipped = 0, set()
        self._bind_keys()
        self.info.setText("Reading the crops with the network…")
        self.worker = start_worker(
            prepare_job,
            self.session,
            on_yield=predict._on_progress,
            on_return=lambda _session: self._reorder(),
            on_finish=self._finished,
            what="Review least sure",
        )
        self._enable(False)

    def _finished(self) -> None:
        self.worker = None
        self._enable(True)

    def _enable(self, idle: bool) -> None:
        ready = idle and self.session is not None and self.session.features is not None
        self.start_button.setEnabled(idle)
        self.next_button.setEnabled(ready)
        self.reject_button.setEnabled(ready)
        self.retrain_button.setEnabled(ready)

    def _bind_keys(self) -> None:
        review = review_of(self.viewer, self.predict.layer)
        classes = list(self.session.classes)
        for key in range(1, min(len(classes), 9) + 1):
            review.bind(str(key), self._key_handler(classes[key - 1]))
        review.describe("1–9", f"correct: {class_keys_hint(classes)}")
        review.bind(REJECT_KEY, lambda _layer: self.reject())
        review.describe(REJECT_KEY, "not a chromosome (left out of the readout)")

    def _key_handler(self, cls: str):
        def handler(_layer):
            """Give the reviewed call the key's class."""
            self.correct(cls)

        return handler

    # ------------------------------------------------------------------ walking
    def _reorder(self) -> None:
        """Rank the calls once in the chosen order and go to the first still to review."""
        if self.session is None or self.session.features is None:
            return
        self.walk = self.session.least_sure(by_class=self.order.currentText() == BY_CLASS)
        self.go_next()

    def go_next(self) -> int:
        """Zoom to the next call of the walk not yet corrected or skipped; returns its label (0
        when every call was seen)."""
        if self.session is None:
            return 0
        left = set(self.session.least_sure())
        todo = [label for label in self.walk if label in left and label not in self.skipped]
        if not todo:
            self.current = 0
            self.info.setText(f"Every call reviewed; {self.session.n_corrected} corrected.")
            return 0
        self.show_call(todo[0])
        return todo[0]

    def skip(self) -> None:
        """Keep the current call as it is and go to the next least sure."""
        if self.current:
            self.skipped.add(self.current)
        self.go_next()

    def show_call(self, label: int) -> None:
        """Zoom to call ``label`` and show its crop, class and confidence."""
        self.current = int(label)
        review_of(self.viewer, self.predict.layer).focus(self.current)
        table = self.session.table
        row = table[table["label"].astype(int) == self.current]
        sure = float(confidence(row, self.session.classes)[0]) if len(row) else float("nan")
        cls = row["class"].iloc[0] if len(row) else "?"
        crop = self.session.crops.get(self.current)
        if crop is not None:
            self.preview.setPixmap(rgb_pixmap(crop.pixels, PREVIEW_SIDE))
        left = len(self.session.least_sure())
        self.info.setText(
            f"Object {self.current}: called <b>{cls}</b> ({100 * sure:.0f}% sure); {left} calls "
            f"to review, {self.session.n_corrected} corrected. Keys: "
            f"{class_keys_hint(self.session.classes)}, {REJECT_KEY} not a chromosome"
        )

    def correct(self, cls: str) -> None:
        """Call the reviewed chromosome ``cls`` (saved to the dataset now) and move on."""
        if self.session is None or not self.current or self.running:
            return
        try:
            self.session.correct(self.current, cls)
        except Exception as error:  # noqa: BLE001 - shown to the user
            report_error(error, "Review least sure")
            return
        self._repaint()
        self.go_next()

    def reject(self) -> None:
        """Mark the reviewed object as not a chromosome: out of the calls and the readout."""
        if self.session is None or not self.current or self.running:
            return
        rejected = self.current
        try:
            self.session.reject(rejected)
        except Exception as error:  # noqa: BLE001 - shown to the user
            report_error(error, "Review least sure")
            return
        layer = self.predict.layer
        layer.data = np.where(layer.data == rejected, 0, layer.data).astype(layer.data.dtype)
        self._repaint()
        self.go_next()

    # ------------------------------------------------------------------ retraining
    def retrain(self) -> None:
        """Retrain on the corrections in a worker; repaint the spread when done."""
        if self.session is None or self.running:
            return
        self.info.setText("Retraining…")
        self._enable(False)
        self.worker = start_worker(
            retrain_job,
            self.session,
            self.predict.image_layer_used.name,
            on_yield=self.predict._on_progress,
            on_return=self._retrained,
            on_finish=self._finished,
            what="Retrain",
        )

    def _retrained(self, result) -> None:
        model, maps, data = result
        predict = self.predict
        predict.model, predict.model_loaded_from = model, None  # no longer the file's model
        predict.prediction = replace(
            predict.prediction, table=self.session.table.copy(), crop_maps=maps
        )
        predict.show_data(predict.image_layer_used, data, staged=False)
        self._mark_corrected()
        self.info.setText(
            f"Retrained on {model.metadata['training']['n']} crops; "
            f"{self.session.n_corrected} calls corrected by hand."
        )
        self._reorder()  # the new calls ranked again

    def _repaint(self) -> None:
        """Show the session's calls after a correction (only the table changed)."""
        predict = self.predict
        objects = predict.prediction.segmentation.objects
        table = calls_table(self.session.table.copy(), objects)
        repaint_calls(self.viewer, predict.layer, table, self.session.classes)
        self._mark_corrected()
        predict._show_distribution(table, list(self.session.classes))
        predict.session.calls_changed.emit(predict.layer.name)

    def _mark_corrected(self) -> None:
        layer = self.predict.layer
        if CORRECTED in layer.features:
            layer.features[CORRECTED] = layer.features[CORRECTED].astype(bool)
        self.viewer.layers.selection.active = layer
