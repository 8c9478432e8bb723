"""Train classifier: folder-per-class crops -> transfer-learning model file, in the background."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from magicgui.widgets import FileEdit
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from napari_chromosome_sort._widgets.session import session_of
from napari_chromosome_sort._widgets.shared.docks import ScrollDock, fit_table_to_rows
from napari_chromosome_sort._widgets.shared.forms import chosen_path, dataclass_form, main_fields
from napari_chromosome_sort._widgets.shared.workers import (
    report_error,
    start_worker,
    warm_imports,
)
from napari_chromosome_sort.classification.config import TrainingConfig
from napari_chromosome_sort.classification.models.registry import BACKBONES
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.progress import Progress, StepTimer, relay

WEIGHT_CHOICES = {
    "ImageNet (cached or downloaded)": "imagenet",
    "Weights file…": "file",
    "Random (no pretraining)": "random",
}
SPECIAL_FIELDS = ("backbone", "weights")
MAIN_OPTIONS = main_fields(TrainingConfig)  # in view; every other option folded under "Advanced"


def train_job(
    folder: str, config, model_path: str, cv_folds: int = 0, reference: str | None = None
):
    """Generator run in the worker: train, optionally cross-validate, then save (atomically).

    The folder and the folds the smallest class allows are checked first (``check_folder``),
    so nothing that can be known up front fails after the long fitting. A failing evaluation
    never discards a fitted model. When the model will get a warning (too few crops, near
    chance), the learning curve is measured on its features to say how many more crops would
    help (:mod:`..classification.training.checks`). The model file is written only after
    everything finished, so cancelling (the consumer stops iterating) leaves any previous model
    file untouched. ``reference``: a second labelled set learnt beside ``folder``'s crops
    (``train_from_folder``); the cross-validation of ``folder`` alone would not judge that
    model, so it is skipped with a note. Returns ``(model, model_path, evaluation, notes)``.
    """
    # torch and scikit-learn load here, in the worker, after warm_imports: not when the dock opens
    from napari_chromosome_sort.classification.models.model_io import save_model
    from napari_chromosome_sort.classification.training.checks import add_learning_curve
    from napari_chromosome_sort.classification.training.head import (
        check_folder,
        scan_folder,
        train_from_folder,
    )

    cv_folds, notes = check_folder(folder, cv_folds)
    if reference and cv_folds:
        cv_folds = 0
        notes.append(REFERENCE_CV_NOTE)
    training = train_from_folder(folder, config, reference)
    model = yield from relay(training, _prefixed("training"))
    evaluation = None
    if cv_folds >= 2:
        try:
            evaluation = yield from _evaluate(folder, config, cv_folds)
        except ChromosortError as error:
            notes.append(f"Cross-validation failed ({error}); the model is saved without it.")
    if evaluation is not None:
        model.metadata.setdefault("metrics", {}).update(
            {
                k: evaluation[k]
                for k in ("n", "accuracy", "kappa", "classes", "confusion", "n_folds")
                if k in evaluation
            }
        )
    paths, targets, _ = scan_folder(folder)
    curve = add_learning_curve(model, paths, targets, max(cv_folds, 5))
    yield from relay(curve, _prefixed("how many more crops would help"))
    save_model(model, model_path)
    return model, model_path, evaluation, notes


REFERENCE_CV_NOTE = (
    "Cross-validation skipped: with reference crops it would judge your crops alone, not this "
    "model. To judge it, label a spread of yours it never saw and compare its calls."
)


def _prefixed(stage: str):
    """A report's message prefixed with ``stage`` (for :func:`.progress.relay`)."""
    return lambda report: Progress(
        report.step, report.total, f"{stage}: {report.message}", report.metrics
    )


def _evaluate(folder: str, config, folds: int):
    """Cross-validation progress, relayed; returns the evaluation."""
    from napari_chromosome_sort.classification.training.head import crossvalidate_folder  # torch

    steps = crossvalidate_folder(folder, config, folds=folds)
    return (yield from relay(steps, _prefixed("cross-validation")))


class TrainWidget(QWidget):
    """Pick a dataset folder, backbone and weights; train with a live progress bar; cancel."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.model = None
        self.model_path = None
        self.timer = StepTimer()
        self.history: list[dict] = []
        # optional folder where backbone features are cached on disk (re-training is then fast)
        self.feature_cache: str | None = None
        self._build_files()
        self._build_options()
        self._build_run()
        self._lay_out()

    def _build_files(self) -> None:
        """The dataset folder, the backbone and its weights, where the model is saved."""
        self.folder = FileEdit(mode="d", value=str(Path.home() / "chromosort_dataset"))
        self.folder.native.setToolTip("Folder with one sub-folder of crops per class")
        self.backbone = QComboBox()
        self.backbone.addItems(list(BACKBONES))
        self.backbone.setToolTip("Pretrained torchvision network whose features are used")
        self.weights_choice = QComboBox()
        self.weights_choice.addItems(list(WEIGHT_CHOICES))
        self.weights_choice.setToolTip(
            "ImageNet weights: from $CHROMOSORT_WEIGHTS_DIR, the torch cache or a download"
        )
        self.weights_file = FileEdit(mode="r", filter="*.pth *.pt *.safetensors")
        self.weights_file.native.setToolTip("A local backbone weights file (.pth/.safetensors)")
        self.weights_file.native.setVisible(False)
        self.weights_choice.currentTextChanged.connect(
            lambda text: self.weights_file.native.setVisible(WEIGHT_CHOICES[text] == "file")
        )
        self.reference = FileEdit(mode="d")
        self.reference.native.setToolTip(
            "Optional: a second labelled set (e.g. the published WT crops), one sub-folder per "
            "class, learnt beside your crops after being moved onto their look. With your crops "
            "cut from 3 or more spreads (the dataset's manifest names them), training also "
            "chooses, spread by spread, whether Predict re-estimates each spread's class mix"
        )
        self.model_file = FileEdit(
            mode="w",
            filter="*.safetensors",
            value=str(Path.home() / "chromosort_model.safetensors"),
        )
        self.model_file.native.setToolTip(
            "Where the trained model is saved; written only after training completes"
        )

    def _build_options(self) -> None:
        """The training options (the main ones in view, the others folded) and the folds."""
        self.options, self._read_main, main_widgets = dataclass_form(
            TrainingConfig, keep=MAIN_OPTIONS
        )
        self.advanced_options, self._read_advanced, advanced_widgets = dataclass_form(
            TrainingConfig, skip=SPECIAL_FIELDS + MAIN_OPTIONS
        )
        self.option_widgets = {**main_widgets, **advanced_widgets}
        self.advanced = QCollapsible("Advanced options (chosen for your data by default)", self)
        self.advanced.addWidget(self.advanced_options.native)
        self.advanced.collapse(animate=False)
        self.advanced.setToolTip("Settings of the classifier that rarely need changing")
        self.cv_folds = QSpinBox()
        self.cv_folds.setRange(0, 20)
        self.cv_folds.setValue(5)
        self.cv_folds.setToolTip(
            "Cross-validation folds for concordance, Cohen's kappa and the confusion matrix "
            "(0 = skip; the inner-CV accuracy from training is still shown)"
        )

    def _build_run(self) -> None:
        """Train and Cancel, the progress bar, and where the results are shown."""
        self.train_button = QPushButton("Train")
        self.train_button.setToolTip("Train a classifier on the labelled crops (in the background)")
        self.train_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop training; an earlier model file stays as it was")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setFormat("%p%")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.results = QLabel("")
        self.results.setWordWrap(True)
        self.confusion = QTableWidget()
        self.confusion.setVisible(False)

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.addRow("Dataset", self.folder.native)
        form.addRow("Reference crops", self.reference.native)
        form.addRow("Backbone", self.backbone)
        form.addRow("Weights", self.weights_choice)
        form.addRow("", self.weights_file.native)
        form.addRow("Save model to", self.model_file.native)
        form.addRow("Evaluate (CV folds)", self.cv_folds)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.options.native)
        layout.addWidget(self.advanced)
        row = QHBoxLayout()
        row.addWidget(self.train_button)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.results)
        layout.addWidget(self.confusion)
        layout.addStretch(1)

    # ------------------------------------------------------------------ config
    def set_weights(self, weights: str) -> None:
        """'imagenet', 'random' or a path (used by tests and scripts)."""
        if weights in ("imagenet", "random"):
            label = next(k for k, v in WEIGHT_CHOICES.items() if v == weights)
            self.weights_choice.setCurrentText(label)
        else:
            self.weights_choice.setCurrentText("Weights file…")
            self.weights_file.value = weights

    def weights(self) -> str:
        """The backbone weights chosen: 'imagenet', 'random' or a file path."""
        choice = WEIGHT_CHOICES[self.weights_choice.currentText()]
        if choice == "file":
            return str(self.weights_file.value)
        return choice

    def _read_config(self):
        main = self._read_main()
        values = {name: getattr(main, name) for name in MAIN_OPTIONS}
        return dataclasses.replace(self._read_advanced(), **values)

    def config(self):
        """The training settings the form shows."""
        config = self._read_config()
        names = {f.name for f in dataclasses.fields(config)}
        extra = {}
        if "backbone" in names:
            extra["backbone"] = self.backbone.currentText()
        if "weights" in names:
            extra["weights"] = self.weights()
        if "cache_dir" in names and self.feature_cache:
            extra["cache_dir"] = str(self.feature_cache)
        return dataclasses.replace(config, **extra)

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        """Is a training running?"""
        return self.worker is not None

    def start(self):
        """Check the inputs, then train (and cross-validate) in a worker thread."""
        if self.running:
            return
        folder = Path(str(self.folder.value))
        if not folder.is_dir():
            show_error(f"Train classifier: dataset folder {folder} does not exist.")
            return
        reference = chosen_path(self.reference)
        if reference is not None and not Path(reference).is_dir():
            show_error(f"Train classifier: reference crops folder {reference} does not exist.")
            return
        model_path = str(self.model_file.value)
        if not model_path or Path(model_path).is_dir():
            show_error("Train classifier: choose a file name to save the model to.")
            return
        try:
            config = self.config()
        except Exception as error:  # noqa: BLE001 - shown to the user
            show_error(f"Train classifier: {error}")
            return
        try:  # the quick check first: a folder that cannot train fails now, not after minutes
            from napari_chromosome_sort.classification.training.head import check_folder  # torch

            _, notes = check_folder(folder, self.cv_folds.value())
        except Exception as error:  # noqa: BLE001 - shown to the user
            report_error(error, "Train classifier")
            return
        for note in notes:
            show_warning(f"Train classifier: {note}")
        self.history = []
        self.model = None
        warm_imports()
        self._set_running(True)
        self.status.setText("Starting…")
        self.results.setText("")
        self.confusion.setVisible(False)
        self.worker = start_worker(
            train_job,
            str(folder),
            config,
            model_path,
            self.cv_folds.value(),
            reference,
            on_yield=self._on_progress,
            on_return=self._on_done,
            on_abort=self._on_abort,
            on_finish=self._on_finish,
            what="Train classifier",
        )

    def cancel(self):
        """Stop at the next step; the model file is not written (any old file stays)."""
        if self.worker is not None:
            self.status.setText("Cancelling…")
            self.worker.quit()

    def _set_running(self, running: bool):
        self.train_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        for widget in (
            self.folder,
            self.model_file,
            self.weights_file,
            self.options,
            self.advanced_options,
        ):
            widget.enabled = not running
        self.backbone.setEnabled(not running)
        self.cv_folds.setEnabled(not running)
        self.weights_choice.setEnabled(not running)

    def _on_progress(self, report):
        self.progress.setMaximum(max(int(report.total), 1))
        self.progress.setValue(int(report.step))
        left = self.timer.left(report)
        self.status.setText(f"{report.message} — {left}" if left else report.message)
        if report.metrics:
            self.history.append(dict(report.metrics))

    def _on_abort(self):
        self.status.setText("Cancelled — the model file was not changed.")
        show_info("Training cancelled; the previous model file is untouched.")

    def _on_finish(self):
        self.worker = None
        self._set_running(False)
        unfinished = self.progress.value() < self.progress.maximum()
        if (self.status.text() == "Starting…" or unfinished) and not self.status.text().startswith(
            "Cancel"
        ):
            self.status.setText("Stopped: the notification says why; no model was written.")

    def _on_done(self, result):
        if result is None:
            return
        model, path, evaluation, notes = result
        self.model, self.model_path, self.evaluation = model, path, evaluation
        self.progress.setValue(self.progress.maximum())
        metrics = dict((getattr(model, "metadata", {}) or {}).get("metrics", {}) or {})
        metrics.update(evaluation or {})
        lines = [f"Model saved to <b>{path}</b>"]
        inner = metrics.get("inner_cv_accuracy")
        if inner is not None:
            lines.append(f"Inner-CV accuracy (model selection) {100 * float(inner):.1f}%")
        prep = getattr(model, "preprocessing", None)
        if prep is not None:
            lines.append(f"Chosen input: {prep.size} px, {prep.geometry}")
        if "accuracy" in metrics:
            folds = metrics.get("n_folds", self.cv_folds.value())
            lines.append(
                f"{folds}-fold CV concordance {100 * metrics['accuracy']:.1f}% "
                f"(n = {metrics.get('n', '?')}), Cohen's κ {metrics.get('kappa', float('nan')):.3f}"
            )
        lines.extend(f"<i>{note}</i>" for note in notes)
        from napari_chromosome_sort.classification.predict import recorded_priors
        from napari_chromosome_sort.classification.training.checks import (  # scikit-learn
            training_warnings,
        )
        from napari_chromosome_sort.classification.training.spread_priors import describe

        priors = recorded_priors(getattr(model, "metadata", {}) or {})
        if priors:
            line = describe(priors, how_to_turn_off=False)
            lines.append(f"{line[0].upper()}{line[1:]}.")

        for warning in training_warnings(getattr(model, "metadata", {}) or {}):
            lines.append(f'<b style="color:#ff9933">⚠ {warning}</b>')
            show_warning(f"Train classifier: {warning}")
        lines.append("It is offered in <b>Predict and explain</b> as “trained here”.")
        self.results.setText("<br>".join(lines))
        self.status.setText("Done.")
        confusion = metrics.get("confusion")
        classes = metrics.get("classes") or list(getattr(model, "classes", []))
        if isinstance(confusion, dict):
            confusion = confusion.get("counts")
        if confusion is not None and classes and np.ndim(confusion) == 2:
            self._show_confusion(np.asarray(confusion), classes)
        session_of(self.viewer).add_model(path)
        show_info(f"Model saved to {path}")

    def _show_confusion(self, confusion: np.ndarray, classes: list[str]):
        n = len(classes)
        self.confusion.setRowCount(n)
        self.confusion.setColumnCount(n)
        self.confusion.setVerticalHeaderLabels([f"true {c}" for c in classes])
        self.confusion.setHorizontalHeaderLabels([f"pred {c}" for c in classes])
        for i in range(n):
            for j in range(n):
                value = confusion[i, j] if i < confusion.shape[0] and j < confusion.shape[1] else 0
                self.confusion.setItem(i, j, QTableWidgetItem(str(int(value))))
        fit_table_to_rows(self.confusion)
        self.confusion.setVisible(True)


class TrainDock(ScrollDock):
    """The TrainWidget in a scroll area: what napari docks (Plugins menu)."""

    def __init__(self, napari_viewer):
        super().__init__(TrainWidget(napari_viewer))
