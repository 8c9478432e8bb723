"""Segment spread's learning panel: learn a segmentation model from the spreads you reviewed,
choose what segments (the built-in rules, the model learned here, a model file), save and load;
and how a layer segmented with a model records it and shows what the model changed.

The learning itself is the core's (:mod:`..segmentation.learned`); this module only moves the
reviewed objects layer into it and shows what it returns.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np
from napari.utils.notifications import show_error
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_chromosome_sort._widgets.shared.layers import META_KEY, layer_image, with_index
from napari_chromosome_sort._widgets.shared.workers import start_worker
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.progress import Progress
from napari_chromosome_sort.segmentation import segment_spread
from napari_chromosome_sort.segmentation.learned import (
    P_COLUMN,
    LearningSession,
    ModelChanges,
    SegmentationModel,
    compare_with_rules,
    describe_model,
    load_segmentation_model,
    model_probabilities,
    reviewed_spread,
    segment_with_model,
)
from napari_chromosome_sort.segmentation.params import SegmentationParams
from napari_chromosome_sort.segmentation.result import Segmentation

RULES = "rules"
SESSION = "session"
FILE = "file"
PICK = "pick"
#: the model choice's entries: (key, text); a loaded file adds "From file: <name>" before PICK
CHOICES = (
    (RULES, "Built-in rules"),
    (SESSION, "Learned since napari started"),
    (PICK, "From file…"),
)
NOTHING_LEARNED = "Nothing learned yet: review a spread, then press Learn from this spread."
#: colours of the points that mark what a model changed against the rules
CHANGE_COLOURS = {"split": "#ff9922", "rejected": "#ff3333", "kept": "#33dd55"}
#: Reviewed = (objects layer, its image layer), or a sentence saying why there is none
Reviewed = Callable[[], "tuple[object, object] | str"]


def segment_compared(
    image: np.ndarray, params: SegmentationParams, model: SegmentationModel
) -> Generator[Progress, None, tuple[Segmentation, ModelChanges]]:
    """Segment ``image`` with ``model`` (as ``chromosort segment --model``) and with the rules
    alone; returns the model's segmentation and what it changed."""
    yield Progress(0, 2, "Segmenting with the built-in rules…")
    rules = segment_spread(image, params)
    yield Progress(1, 2, "Applying the model…")
    learned = segment_with_model(image, model, params, rules=rules)
    return learned, compare_with_rules(rules, learned)


def _learn(
    session: LearningSession, spread, base: SegmentationParams
) -> Generator[Progress, None, SegmentationModel | str]:
    """The session's learning; why nothing could be learned (a ChromosortError) is returned as
    a sentence to show in the panel (a returned exception would be raised by the worker)."""
    try:
        return (yield from session.learn(spread, base))
    except ChromosortError as error:
        return str(error)


def layer_model(layer) -> SegmentationModel | None:
    """The segmentation model an objects layer was segmented with, or None (the rules)."""
    data = layer.metadata.get(META_KEY, {}).get("model") if layer is not None else None
    if not data:
        return None
    try:
        return SegmentationModel.from_dict(data)
    except ChromosortError:
        return None


def segmentation_layer_data(
    image_name: str,
    segmentation: Segmentation,
    model: SegmentationModel | None = None,
    model_name: str = "",
    changes: ModelChanges | None = None,
) -> tuple:
    """``(features, metadata)`` of the objects layer of a segmentation: the objects table (with
    the model's probabilities when a model decided) and what the plugin needs to find again."""
    features = with_index(segmentation.objects)
    if model is not None:
        features[P_COLUMN] = np.round(model_probabilities(segmentation.objects, model), 3)
    params = getattr(segmentation, "params", None)
    meta = {
        "kind": "segmentation",
        "image_layer": image_name,
        "polarity": getattr(segmentation, "polarity", None),
        # a noisy spread is denoised for segmentation; its crops must be too
        "denoised": bool(getattr(segmentation, "stats", {}).get("denoised")),
        "params": dataclasses.asdict(params) if dataclasses.is_dataclass(params) else {},
        # the model that decided (None: the rules), for review in order of its doubt
        "model": json.loads(model.to_json()) if model is not None else None,
        "model_name": model_name,
        "model_changes": changes.summary() if changes is not None else "",
    }
    return features, {META_KEY: meta}


def show_model_changes(
    viewer, image_name: str, layer, changes: ModelChanges | None, objects
) -> None:
    """A points layer ``<image> model changes`` marking what the model changed against the
    rules (removed when the rules segmented)."""
    name = f"{image_name} model changes"
    if name in viewer.layers:
        viewer.layers.remove(name)
    if changes is None or changes.objects.empty:
        return
    kept = objects.loc[objects["status"] == "chromosome", "area"]
    size = 1.5 * float(np.sqrt(np.median(kept))) if len(kept) else 20.0
    table = changes.objects
    viewer.add_points(
        table[["centroid_y", "centroid_x"]].to_numpy(float),
        name=name,
        features=table[["change"]].reset_index(drop=True),
        text={"string": "{change}", "color": "white", "size": 9, "anchor": "upper_left"},
        size=size,
        symbol="ring",
        face_color=[CHANGE_COLOURS[c] for c in table["change"]],
        border_width=0,
        opacity=0.7,
        scale=layer.scale,
        translate=layer.translate,
    )
    viewer.layers.selection.active = layer  # keys and clicks stay on the objects


class SegmentLearningPanel(QWidget):
    """Learn from this spread, the count of examples, Save model… / Load model…, and the model
    choice (``choice``, placed by the Segment widget next to its image)."""

    def __init__(
        self,
        reviewed: Reviewed,
        base_params: Callable[[], SegmentationParams],
        on_model_changed: Callable[[], None],
    ):
        super().__init__()
        self.session = LearningSession()
        self.file_model: SegmentationModel | None = None
        self.worker = None
        self._reviewed = reviewed
        self._base_params = base_params
        self._on_model_changed = on_model_changed
        self._outcome: str | None = None  # of the last learning: "learned" or "failed"

        self.choice = QComboBox()
        for key, text in CHOICES:
            self.choice.addItem(text, key)
        self._set_enabled(SESSION, False)
        self.choice.setToolTip(
            "What decides which objects are chromosomes: the built-in rules, the model learned "
            "from the spreads you reviewed since napari started, or a model file"
        )
        self._chosen = 0
        self.learn_button = QPushButton("Learn from this spread")
        self.learn_button.setToolTip(
            "Learn from the reviewed objects layer: the objects you kept (green) are chromosomes, "
            "every other object is not; spreads learned earlier since napari started count too"
        )
        self.count = QLabel(NOTHING_LEARNED)
        self.count.setWordWrap(True)
        self.save_button = QPushButton("Save model…")
        self.save_button.setToolTip("Save the model learned since napari started as a .json file")
        self.save_button.setEnabled(False)
        self.load_button = QPushButton("Load model…")
        self.load_button.setToolTip(
            "Segment with a model file (from Save model… or 'chromosort segment-learn')"
        )
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.message = QLabel("")
        self.message.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.learn_button)
        layout.addWidget(self.count)
        row = QHBoxLayout()
        row.addWidget(self.save_button)
        row.addWidget(self.load_button)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)

        self.choice.currentIndexChanged.connect(self._choice_changed)
        self.learn_button.clicked.connect(self.learn)
        self.save_button.clicked.connect(lambda: self.save_model())
        self.load_button.clicked.connect(lambda: self.load_model())

    # ------------------------------------------------------------------ the model choice
    def model(self) -> SegmentationModel | None:
        """The chosen model, or None for the built-in rules."""
        key = self.choice.currentData()
        if key == SESSION:
            return self.session.model
        if key == FILE:
            return self.file_model
        return None

    def model_name(self) -> str:
        """How the chosen model is named in the Segment widget's summary."""
        key = self.choice.currentData()
        if key == SESSION:
            n = len(self.session.model.spreads) if self.session.model else 0
            return f"the model learned since napari started ({n} spread{'' if n == 1 else 's'})"
        if key == FILE:
            return self.choice.currentText().removeprefix("From file: ")
        return "the built-in rules"

    def choose(self, key: str) -> None:
        """Choose the entry ``key`` (RULES, SESSION or FILE) of the model choice."""
        index = self.choice.findData(key)
        if index >= 0:
            self.choice.setCurrentIndex(index)

    def _set_enabled(self, key: str, enabled: bool) -> None:
        item = self.choice.model().item(self.choice.findData(key))
        item.setEnabled(enabled)

    def _choice_changed(self, index: int) -> None:
        if self.choice.itemData(index) == PICK:
            self._revert()  # back to the earlier choice unless a file is loaded
            self.load_model()
            return
        if index != self._chosen:
            self._chosen = index
            self._say("")
            self._on_model_changed()

    def _revert(self) -> None:
        self.choice.blockSignals(True)
        self.choice.setCurrentIndex(self._chosen)
        self.choice.blockSignals(False)

    # ------------------------------------------------------------------ files
    def _ask_open_path(self) -> str:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load a segmentation model", "", "Segmentation model (*.json)"
        )
        return path

    def _ask_save_path(self) -> str:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the segmentation model", "segmentation-model.json", "JSON (*.json)"
        )
        return path

    def load_model(self, path: str | Path | None = None) -> bool:
        """Load a model file and choose it (a dialog asks for ``path`` when not given). A file
        that is not a readable model leaves the current model in place and says why."""
        path = path or self._ask_open_path()
        if not path:
            return False
        try:
            model = load_segmentation_model(path)
        except ChromosortError as error:
            self._fail(str(error))
            return False
        self.file_model = model
        text = f"From file: {Path(path).name}"
        index = self.choice.findData(FILE)
        if index < 0:
            index = self.choice.findData(PICK)
            self.choice.insertItem(index, text, FILE)
        else:
            self.choice.setItemText(index, text)
        if self.choice.currentData() == FILE:
            self._on_model_changed()  # another file in the same entry
        else:
            self.choose(FILE)
        self._say(f"Loaded {Path(path).name}. {describe_model(model)}.")
        return True

    def save_model(self, path: str | Path | None = None) -> Path | None:
        """Save the model learned since napari started (atomically; a dialog asks for ``path``
        when not given); returns where."""
        model = self.session.model
        if model is None:
            self._fail("nothing learned yet: press Learn from this spread first")
            return None
        path = path or self._ask_save_path()
        if not path:
            return None
        path = Path(path)
        if not path.suffix:
            path = path.with_suffix(".json")
        try:
            model.save(path)
        except OSError as error:
            self._fail(f"cannot save the model to {path.name}: {error.strerror or error}")
            return None
        self._say(f"Saved the model to {path.name}.")
        return path

    # ------------------------------------------------------------------ learning
    @property
    def learning(self) -> bool:
        """Is a learning running?"""
        return self.worker is not None

    def learn(self) -> None:
        """Learn from the reviewed objects layer (plus the spreads learned before) in the
        background."""
        if self.learning:
            return
        reviewed = self._reviewed()
        if isinstance(reviewed, str):
            self._fail(reviewed)
            return
        layer, image_layer = reviewed
        try:
            spread = reviewed_spread(
                image_layer.name, layer_image(image_layer), np.asarray(layer.data), layer.features
            )
        except ChromosortError as error:
            self._fail(str(error))
            return
        self._outcome = None
        self.learn_button.setEnabled(False)
        self.learn_button.setText("Learning…")
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self._say(f"Learning from {spread.name} and the spreads learned before…")
        self.worker = start_worker(
            _learn,
            self.session,
            spread,
            self._base_params(),
            on_yield=self._on_progress,
            on_return=self._on_learned,
            on_finish=self._on_finished,
            what="Learn from this spread",
        )

    def _on_progress(self, report: Progress) -> None:
        self.progress.setMaximum(max(int(report.total), 1))
        self.progress.setValue(int(report.step))
        if report.message:
            self.message.setText(report.message)

    def _on_learned(self, result) -> None:
        if isinstance(result, str):
            self._outcome = "failed"
            self._fail(f"nothing learned: {result}")
            return
        self._outcome = "learned"
        self.count.setText(describe_model(result) + ".")
        self._set_enabled(SESSION, True)
        self.save_button.setEnabled(True)
        if self.choice.currentData() == SESSION:
            self._say("Learned. Segment again to use the updated model.")
            self._on_model_changed()
        else:
            self._say(
                "Learned. To segment with it, choose 'Learned since napari started' above; "
                "the built-in rules stay in use until you do."
            )

    def _on_finished(self) -> None:
        self.worker = None
        self.learn_button.setEnabled(True)
        self.learn_button.setText("Learn from this spread")
        self.progress.setVisible(False)
        if self._outcome is None:  # an unexpected error, already a notification
            self._fail("learning stopped on an error (see the notification)", notify=False)

    # ------------------------------------------------------------------ messages
    def _say(self, text: str) -> None:
        self.message.setText(text)

    def _fail(self, text: str, notify: bool = True) -> None:
        """Show a one-line error in the panel (and as a notification)."""
        self.message.setText(f"⚠ {text}")
        if notify:
            show_error(f"Segment spread: {text}")
