"""Predict folder: the core batch run over a folder of spreads, and its results opened in the
viewer (each spread's image with its calls and Grad-CAM, chosen from a list)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from magicgui.widgets import ComboBox, FileEdit
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QFormLayout, QGroupBox, QPushButton, QVBoxLayout

from napari_chromosome_sort._widgets.predicting.calls_layers import CallsData, calls_data
from napari_chromosome_sort._widgets.shared.forms import chosen_path

SPREADS = "spreads"  # the batch run's folder of per-spread results: spreads/<sample>/<spread>/


def folder_job(folder: str, model_path: str, out_dir: str):
    """Worker generator: the core batch run over a folder of spreads (in this process), then
    its first spread read back (:func:`read_spread_result`). Returns ``(BatchResult, first
    spread or None)``."""
    from napari_chromosome_sort.batch import run_batch

    result = yield from run_batch(folder, model_path, out_dir, scheduler="serial")
    pairs = spreads_of(result.objects)
    first = read_spread_result(out_dir, result.objects, *pairs[0]) if pairs else None
    return result, first


def spreads_of(objects: pd.DataFrame) -> list[tuple[str, str]]:
    """The ``(sample, spread)`` pairs of a batch run's objects table, in its order."""
    if objects is None or objects.empty or not {"sample", "spread"} <= set(objects.columns):
        return []
    pairs = objects[["sample", "spread"]].astype(str).drop_duplicates()
    return list(pairs.itertuples(index=False, name=None))


def read_spread_result(out_dir, objects: pd.DataFrame, sample: str, spread: str):
    """One spread of a batch run read back as ``(image, CallsData)``: the spread's image, its
    objects (``labels.npy``), calls (the objects table) and Grad-CAM (``gradcam.npy``, when
    the run made it). Runs on a worker."""
    from napari_chromosome_sort.files.io import read_image

    rows = objects[(objects["sample"].astype(str) == sample) & (objects["spread"] == spread)]
    folder = Path(out_dir) / SPREADS / sample / spread
    image = read_image(rows["image"].iloc[0])
    labels = np.load(folder / "labels.npy", allow_pickle=False)
    heat = folder / "gradcam.npy"
    heat = np.load(heat, allow_pickle=False) if heat.is_file() else None
    classes = [str(c)[2:] for c in rows.columns if str(c).startswith("p_")]
    table = rows[rows["class"].notna()].reset_index(drop=True)
    table = table.drop(columns=["image"], errors="ignore")
    return image, calls_data(f"{sample} {spread}", classes, table, labels, heat)


class FolderSection(QGroupBox):
    """The "Predict folder" section of the Predict widget (``predict``): the run, then its
    spreads offered in a list and the first one shown."""

    def __init__(self, predict):
        super().__init__("Predict folder")
        self.predict = predict
        self.result = None
        self.out_dir: Path | None = None
        self.folder = FileEdit(mode="d")
        self.folder.native.setToolTip("A folder of spreads (sub-folders = samples)")
        self.out_folder = FileEdit(mode="d")
        self.out_folder.native.setToolTip("Where the batch tables, plots and maps are written")
        self.button = QPushButton("Predict folder")
        self.button.setToolTip(
            "Segment and classify every spread of the folder; tables and plots per sample; the "
            "first spread's calls are shown"
        )
        self.spreads = ComboBox(choices=[], tooltip="A spread of the folder run to show")
        self.show_button = QPushButton("Show spread")
        self.show_button.setToolTip("Open the chosen spread with its calls and Grad-CAM")
        self.show_button.setEnabled(False)
        form = QFormLayout()
        form.addRow("Spreads folder", self.folder.native)
        form.addRow("Output folder", self.out_folder.native)
        form.addRow("", self.button)
        form.addRow("Results", self.spreads.native)
        form.addRow("", self.show_button)
        QVBoxLayout(self).addLayout(form)
        self.button.clicked.connect(self.run)
        self.show_button.clicked.connect(lambda: self.show_spread(self.spreads.value))

    def run(self) -> None:
        """Segment, classify and explain every spread of a folder (a batch run)."""
        predict = self.predict
        if predict.running:
            return
        model_path = predict._model_path()
        folder = Path(str(self.folder.value))
        out_dir = Path(str(self.out_folder.value))
        if model_path is None:
            return
        if not folder.is_dir() or chosen_path(self.folder) is None:
            show_error("Predict folder: choose an existing folder of spreads.")
            return
        if chosen_path(self.out_folder) is None:
            out_dir = folder.parent / f"{folder.name}_chromosort"
        predict.start(
            folder_job,
            str(folder),
            model_path,
            str(out_dir),
            on_return=lambda done: self._done(out_dir, *done),
            what="Predict folder",
        )

    def _done(self, out_dir: Path, result, first) -> None:
        failures = getattr(result, "failures", {}) or {}
        self.result, self.out_dir = result, Path(out_dir)
        pairs = spreads_of(getattr(result, "objects", None))
        self.spreads.choices = [
            (f"{sample} / {spread}", (sample, spread)) for sample, spread in pairs
        ]
        self.show_button.setEnabled(bool(pairs))
        self.predict.status.setText(
            f"Folder done: tables and plots in <b>{out_dir}</b>"
            + (f"; {len(failures)} spread(s) failed" if failures else "")
            + (f"; {len(pairs)} spread(s) listed under Results, the first shown" if pairs else "")
        )
        show_info(f"Batch predictions written to {out_dir}")
        for line in getattr(result, "warning_lines", list)():
            show_warning(f"Predict folder: {line}")
        if first is not None:
            self.spreads.value = pairs[0]
            self._show(first)

    def show_spread(self, pair) -> None:
        """Open one spread of the run (read on a worker) with its calls and Grad-CAM."""
        if pair is None or self.result is None or self.predict.running:
            return
        sample, spread = pair
        self.spreads.value = pair
        self.predict.start(
            read_spread_result,
            self.out_dir,
            self.result.objects,
            sample,
            spread,
            on_return=self._show,
            what="Show spread",
        )

    def _show(self, loaded: tuple[np.ndarray, CallsData]) -> None:
        image, data = loaded
        viewer = self.predict.viewer
        if data.image_name in viewer.layers:
            image_layer = viewer.layers[data.image_name]
        else:
            image_layer = viewer.add_image(image, name=data.image_name)
        self.predict.prediction = None  # a folder run keeps no crops: no review, no panel map
        self.predict.show_data(image_layer, data)
