"""Readout dock widget: per-sample type distributions (stacked bar) and the sample comparison.

Source: either a predictions table (CSV, e.g. ``chromosort batch``'s ``objects.csv``) or the
``features`` of Labels layers in the viewer (one layer = one spread; the sample is the layer's
``sample`` feature if present, else the layer name). Nothing is computed here beyond calling
``readout`` and ``plots``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Labels
from napari.utils.notifications import show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..analysis import plots, readout
from ..errors import ChromosortError
from ._common import ScrollDock, class_colours, report_error

TABLE = "predictions table (CSV)"
LAYERS = "Labels layers (features)"
PREDICTED = " predicted classes"  # Predict's layer name: "<image> predicted classes"


def class_order(layers) -> list[str]:
    """The classes in the model's order (the ``p_<class>`` columns of Predict's layers), which
    is the order that gives each class its colour on the spread."""
    for layer in layers:
        columns = [c for c in pd.DataFrame(layer.features).columns if str(c).startswith("p_")]
        if columns:
            return [c[2:] for c in columns]
    return []


def table_from_layers(layers) -> pd.DataFrame:
    """Concatenate the features of Labels layers into a calls table (sample, spread, class)."""
    frames = []
    for layer in layers:
        features = pd.DataFrame(layer.features)
        if "class" not in features.columns or features.empty:
            continue
        features = features.copy()
        if "status" in features.columns:
            features = features[features["status"].isna() | (features["status"] == "chromosome")]
        features["spread"] = layer.name
        if "sample" not in features.columns or features["sample"].isna().all():
            # the spread's image name, not "<image> predicted classes"
            features["sample"] = layer.name.removesuffix(PREDICTED) or layer.name
        frames.append(features[["sample", "spread", "class"]])
    if not frames:
        raise ChromosortError(
            "none of the chosen Labels layers has a 'class' feature: run Predict first"
        )
    table = pd.concat(frames, ignore_index=True)
    table = table[table["class"].notna() & (table["class"].astype(str) != "")]
    return table


class ReadoutWidget(QWidget):
    """Stacked bar per sample + chi-square / permutation test between samples."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.table: pd.DataFrame | None = None
        self.summary: pd.DataFrame | None = None
        self.comparisons: list = []
        self.colours: dict[str, str] = {}

        self.source = QComboBox()
        self.source.addItems([LAYERS, TABLE])
        self.open_button = QPushButton("Open table…")
        self.open_button.clicked.connect(self._choose_table)
        self.table_label = QLabel("no table")
        self.layer_list = QListWidget()
        self.layer_list.setMaximumHeight(110)
        self.sample_col = QComboBox()
        self.class_col = QComboBox()
        self.reference = QComboBox()
        self.source.setToolTip(
            "Where the calls come from: the predicted-class layers open in napari, or a table "
            "saved by 'Predict folder' / Export CSV"
        )
        self.open_button.setToolTip("Open a table of calls (CSV), e.g. objects.csv of a batch run")
        self.layer_list.setToolTip("The spreads (predicted-class layers) to count, one sample each")
        self.sample_col.setToolTip("The table column naming each chromosome's sample")
        self.class_col.setToolTip("The table column holding each chromosome's class (type)")
        self.reference.setToolTip("The sample the others are compared with (e.g. wild type)")
        self.compute_button = QPushButton("Compute readout")
        self.compute_button.clicked.connect(self.compute)
        self.compute_button.setToolTip(
            "Count the types per sample, plot them and test whether the samples differ"
        )
        self.save_button = QPushButton("Save CSV + plots…")
        self.save_button.clicked.connect(self._choose_save)
        self.save_button.setEnabled(False)
        self.save_button.setToolTip("Save the counts, the tests and the plot to a folder")

        self.figure = Figure(figsize=(4, 3.6), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(280)
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        form = QFormLayout()
        form.addRow("source", self.source)
        row = QHBoxLayout()
        row.addWidget(self.open_button)
        row.addWidget(self.table_label, 1)
        form.addRow(row)
        form.addRow("spreads", self.layer_list)
        form.addRow("sample column", self.sample_col)
        form.addRow("class column", self.class_col)
        form.addRow("compare with", self.reference)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        buttons = QHBoxLayout()
        buttons.addWidget(self.compute_button)
        buttons.addWidget(self.save_button)
        layout.addLayout(buttons)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.result_label)

        self.source.currentIndexChanged.connect(self._source_changed)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed):
            event.connect(self._refresh_layers)
        self._refresh_layers()
        self._source_changed()

    # ------------------------------------------------------------------ inputs
    def _source_changed(self, *_):
        layers = self.source.currentText() == LAYERS
        self.layer_list.setEnabled(layers)
        self.open_button.setEnabled(not layers)
        self.sample_col.setEnabled(not layers)
        self.class_col.setEnabled(not layers)

    def _refresh_layers(self, *_):
        checked = {
            self.layer_list.item(i).text()
            for i in range(self.layer_list.count())
            if self.layer_list.item(i).checkState() == Qt.CheckState.Checked
        }
        self.layer_list.clear()
        for layer in self.viewer.layers:
            if isinstance(layer, Labels):
                item = QListWidgetItem(layer.name)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                has_class = "class" in getattr(layer, "features", pd.DataFrame()).columns
                state = layer.name in checked or (not checked and has_class)
                item.setCheckState(Qt.CheckState.Checked if state else Qt.CheckState.Unchecked)
                self.layer_list.addItem(item)

    def _choose_table(self):
        path, _ = QFileDialog.getOpenFileName(self, "Predictions table", "", "CSV (*.csv)")
        if path:
            self.load_table(path)

    def load_table(self, path) -> None:
        """Read a calls table and offer its columns."""
        try:
            table = pd.read_csv(path)
        except Exception as error:  # noqa: BLE001
            report_error(ChromosortError(f"cannot read {path}: {error}"), "Readout")
            return
        self.table = table
        self.source.setCurrentText(TABLE)
        self.table_label.setText(Path(path).name)
        for combo, default in ((self.sample_col, "sample"), (self.class_col, "class")):
            combo.clear()
            combo.addItems([str(c) for c in table.columns])
            if default in table.columns:
                combo.setCurrentText(default)

    def current_table(self) -> tuple[pd.DataFrame, str, str]:
        if self.source.currentText() == LAYERS:
            names = [
                self.layer_list.item(i).text()
                for i in range(self.layer_list.count())
                if self.layer_list.item(i).checkState() == Qt.CheckState.Checked
            ]
            layers = [self.viewer.layers[n] for n in names if n in self.viewer.layers]
            if not layers:
                raise ChromosortError("tick at least one Labels layer with predictions")
            table = table_from_layers(layers)
            order = class_order(layers)
            order += sorted(set(table["class"].astype(str)) - set(order))
            self.colours = class_colours(order)
            return table, "sample", "class"
        if self.table is None:
            raise ChromosortError("open a predictions table first")
        probabilities = [c[2:] for c in self.table.columns if str(c).startswith("p_")]
        self.colours = class_colours(probabilities)  # the model's order, as on the spread
        return self.table, self.sample_col.currentText(), self.class_col.currentText()

    # ------------------------------------------------------------------ compute
    def compute(self) -> None:
        try:
            table, sample_col, class_col = self.current_table()
            summary = readout.summarize(table, sample_col, class_col)
            samples = list(dict.fromkeys(summary["sample"]))
            current = self.reference.currentText()
            self.reference.blockSignals(True)
            self.reference.clear()
            self.reference.addItems(samples)
            if current in samples:
                self.reference.setCurrentText(current)
            self.reference.blockSignals(False)
            reference = self.reference.currentText() or None
            comparisons = readout.compare_all(table, sample_col, class_col, reference=reference)
            lines = readout.comparison_lines(table, comparisons, sample_col, class_col, "spread")
        except ChromosortError as error:
            report_error(error, "Readout")
            return
        self.summary, self.comparisons = summary, comparisons
        plots.stacked_bar(summary, comparisons=comparisons, fig=self.figure, colours=self.colours)
        self.canvas.draw_idle()
        self.result_label.setText("\n\n".join(lines))
        self.save_button.setEnabled(True)

    def _choose_save(self):
        folder = QFileDialog.getExistingDirectory(self, "Save readout to folder")
        if folder:
            self.save(folder)

    def save(self, folder) -> list[Path]:
        if self.summary is None:
            raise ChromosortError("compute the readout first")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.summary.to_csv(folder / "summary.csv", index=False)
        files = [folder / "summary.csv"]
        if self.comparisons:
            pd.DataFrame([c.as_dict() for c in self.comparisons]).to_csv(
                folder / "comparisons.csv", index=False
            )
            files.append(folder / "comparisons.csv")
        fig = plots.stacked_bar(self.summary, comparisons=self.comparisons, colours=self.colours)
        files += plots.save_figure(fig, folder / "stacked_bar")
        show_info(f"readout saved to {folder}")
        return files


class ReadoutDock(ScrollDock):
    """The ReadoutWidget in a scroll area: what napari docks (Plugins menu)."""

    def __init__(self, napari_viewer):
        super().__init__(ReadoutWidget(napari_viewer))
