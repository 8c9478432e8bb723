"""Gallery dock widget: review a folder of images sorted by a whole-image sorter.

Thumbnails are grouped by predicted class (one tab per class, plus ``_review`` for images below
the confidence threshold). Clicking a thumbnail offers the classes; choosing one writes the
image into that class folder of the training set (``sorter.add_to_training_set``: atomic copy,
originals never moved) and moves the thumbnail to that tab. Double-click opens the image.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from napari.utils.notifications import show_info
from qtpy.QtCore import QSize, Qt
from qtpy.QtGui import QIcon
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from napari_chromosome_sort._widgets.shared.docks import ScrollDock, rgb_pixmap
from napari_chromosome_sort._widgets.shared.workers import report_error, start_worker
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.sorter import (
    REVIEW,
    add_to_training_set,
    list_images,
    load_rgb,
    predict_images,
)

THUMB = 96
PATH_ROLE = Qt.ItemDataRole.UserRole


def _predict_job(model_path: str, folder: str):
    """Worker generator: load the sorter, classify every image in ``folder``; returns
    ``(classes, table)``."""
    from napari_chromosome_sort.classification.models import model_io  # torch: in the worker

    model = model_io.load_model(model_path)
    paths = list_images(folder)
    if not paths:
        raise ChromosortError(f"no images in {folder}")
    table = yield from predict_images(model, paths, tta=True, progress=True)
    return list(model.classes), table


class GalleryWidget(QWidget):
    """Folder of images -> thumbnails by predicted class; click to correct into the dataset."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.model_path: str | None = None
        self.folder: str | None = None
        self.dataset: str | None = None
        self.classes: list[str] = []
        self.table: pd.DataFrame | None = None
        self.lists: dict[str, QListWidget] = {}
        self.worker = None

        self.model_button = QPushButton("Sorter model…")
        self.model_button.clicked.connect(self._choose_model)
        self.folder_button = QPushButton("Images folder…")
        self.folder_button.clicked.connect(self._choose_folder)
        self.dataset_button = QPushButton("Training set…")
        self.dataset_button.clicked.connect(self._choose_dataset)
        self.model_label, self.folder_label, self.dataset_label = (
            QLabel("none"),
            QLabel("none"),
            QLabel("none"),
        )
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(0.6)
        self.threshold.setToolTip(
            "Images the model is less sure of than this (0-1) go to the '_review' tab"
        )
        self.model_button.setToolTip("A whole-image sorter model file")
        self.folder_button.setToolTip("The folder of images to sort")
        self.dataset_button.setToolTip("Where your corrections are saved as new training images")
        self.run_button = QPushButton("Classify folder")
        self.run_button.clicked.connect(self.run)
        self.run_button.setToolTip("Sort every image of the folder by the model's class")
        self.progress = QProgressBar()
        self.tabs = QTabWidget()
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        for button, label in (
            (self.model_button, self.model_label),
            (self.folder_button, self.folder_label),
            (self.dataset_button, self.dataset_label),
        ):
            row = QHBoxLayout()
            row.addWidget(button)
            row.addWidget(label, 1)
            form.addRow(row)
        form.addRow("review below confidence", self.threshold)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addWidget(self.progress)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.status)
        self.threshold.valueChanged.connect(lambda *_: self._fill())

    # ------------------------------------------------------------------ choices
    def _choose_model(self):
        path, _ = QFileDialog.getOpenFileName(self, "Sorter model", "", "Model (*.safetensors)")
        if path:
            self.set_model(path)

    def _choose_folder(self):
        folder = QFileDialog.getExistingDirectory(self, "Folder of images to review")
        if folder:
            self.set_folder(folder)

    def _choose_dataset(self):
        folder = QFileDialog.getExistingDirectory(self, "Training set (folder per class)")
        if folder:
            self.set_dataset(folder)

    def set_model(self, path) -> None:
        """Use the sorter model at ``path``."""
        self.model_path = str(path)
        self.model_label.setText(Path(path).name)

    def set_folder(self, folder) -> None:
        """Review the images below ``folder``."""
        self.folder = str(folder)
        self.folder_label.setText(Path(folder).name)

    def set_dataset(self, folder) -> None:
        """Save corrections as new training images in ``folder`` (one sub-folder per class)."""
        self.dataset = str(folder)
        self.dataset_label.setText(Path(folder).name)

    # ------------------------------------------------------------------ classify
    def run(self):
        """Classify the folder's images in a worker; returns the worker (None when a choice is
        missing)."""
        if not self.model_path or not self.folder:
            report_error(ChromosortError("choose a sorter model and an images folder"), "Gallery")
            return None
        self.run_button.setEnabled(False)
        self.worker = start_worker(
            _predict_job,
            self.model_path,
            self.folder,
            on_yield=self._on_progress,
            on_return=lambda result: self.show_predictions(*result),
            on_finish=lambda: self.run_button.setEnabled(True),
            what="Gallery",
        )
        return self.worker

    def _on_progress(self, report):
        self.progress.setMaximum(max(report.total, 1))
        self.progress.setValue(report.step)

    def show_predictions(self, classes: list[str], table: pd.DataFrame) -> None:
        """Show ``table`` (one row per image) as thumbnails grouped by predicted class, none
        corrected yet."""
        self.classes = list(classes)
        self.table = table.copy()
        self.table["corrected"] = ""
        self._fill()

    def _group(self, row) -> str:
        if row["corrected"]:
            return row["corrected"]
        if row["confidence"] < self.threshold.value():
            return REVIEW
        return row["class"]

    def _fill(self) -> None:
        if self.table is None:
            return
        self.tabs.clear()
        self.lists = {}
        for group in [*self.classes, REVIEW]:
            lst = QListWidget()
            lst.setViewMode(QListWidget.ViewMode.IconMode)
            lst.setIconSize(QSize(THUMB, THUMB))
            lst.setResizeMode(QListWidget.ResizeMode.Adjust)
            lst.setWrapping(True)
            lst.itemClicked.connect(self._on_click)
            lst.itemDoubleClicked.connect(self._on_double_click)
            self.lists[group] = lst
        for _, row in self.table.iterrows():
            self.lists[self._group(row)].addItem(self._item(row))
        for group, lst in self.lists.items():
            self.tabs.addTab(lst, f"{group} ({lst.count()})")
        n_corr = int((self.table["corrected"] != "").sum())
        self.status.setText(f"{len(self.table)} images; {n_corr} corrected")

    def _item(self, row) -> QListWidgetItem:
        path = row["file"]
        try:
            icon = QIcon(rgb_pixmap(load_rgb(path, max_side=2 * THUMB), THUMB))
        except ChromosortError:
            icon = QIcon()
        text = f"{Path(path).name}\n{row['class']} {row['confidence']:.2f}"
        if row["corrected"]:
            text += f" → {row['corrected']}"
        item = QListWidgetItem(icon, text)
        item.setData(PATH_ROLE, path)
        item.setToolTip(path)
        return item

    # ------------------------------------------------------------------ corrections
    def _on_click(self, item: QListWidgetItem):
        menu = QMenu(self)
        for cls in self.classes:
            action = menu.addAction(f"→ {cls}")
            action.setData(cls)
        chosen = menu.exec(self.cursor().pos())
        if chosen is not None:
            self.correct(item.data(PATH_ROLE), chosen.data())

    def _on_double_click(self, item: QListWidgetItem):
        path = item.data(PATH_ROLE)
        self.viewer.add_image(load_rgb(path, max_side=4096), name=Path(path).name, rgb=True)

    def correct(self, path: str, cls: str) -> Path | None:
        """Record ``cls`` for ``path``: copy into the training set's class folder, move the tile."""
        if cls not in self.classes:
            report_error(ChromosortError(f"unknown class {cls!r}"), "Gallery")
            return None
        if not self.dataset:
            report_error(
                ChromosortError("choose the training set folder to write corrections into"),
                "Gallery",
            )
            return None
        try:
            dest = add_to_training_set(path, self.dataset, cls)
        except (ChromosortError, OSError) as error:
            report_error(error, "Gallery")
            return None
        self.table.loc[self.table["file"] == path, "corrected"] = cls
        self._fill()
        self.tabs.setCurrentIndex(self.classes.index(cls))
        show_info(f"{Path(path).name} → {cls} (written to {dest})")
        return dest


class GalleryDock(ScrollDock):
    """The GalleryWidget in a scroll area: what napari docks (Plugins menu)."""

    def __init__(self, napari_viewer):
        super().__init__(GalleryWidget(napari_viewer))
