"""Readout dock widget: per-sample type distributions (stacked bar) and the sample comparison.

Source: either a predictions table (CSV, e.g. ``chromosort batch``'s ``objects.csv``) or the
``features`` of Labels layers in the viewer (one layer = one spread, grouped into named samples
in the widget's spreads table: spreads given the same sample name are counted together). Nothing
is computed here beyond calling ``readout`` and ``plots``.
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
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_chromosome_sort._widgets.session import session_of
from napari_chromosome_sort._widgets.shared.docks import ScrollDock, fit_table_to_rows
from napari_chromosome_sort._widgets.shared.workers import report_error
from napari_chromosome_sort.analysis import plots, readout
from napari_chromosome_sort.classification.training.corrections import CORRECTED
from napari_chromosome_sort.display.colours import class_colours
from napari_chromosome_sort.errors import ChromosortError

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


def class_columns(table: pd.DataFrame, max_classes: int = 20) -> list[str]:
    """The columns that can be read as a type distribution: text columns with at most
    ``max_classes`` distinct values ('class' first); numbers (areas, probabilities) are not."""
    columns = [
        str(c)
        for c in table.columns
        if not pd.api.types.is_numeric_dtype(table[c])
        and not pd.api.types.is_bool_dtype(table[c])
        and 0 < table[c].nunique(dropna=True) <= max_classes
    ]
    return sorted(columns, key=lambda c: c != "class")


def default_sample(layer_name: str) -> str:
    """The sample a spread belongs to until the user names it: its image's name."""
    return layer_name.removesuffix(PREDICTED) or layer_name


def table_from_layers(layers, samples: dict[str, str] | None = None) -> pd.DataFrame:
    """Concatenate the features of Labels layers into a calls table (sample, spread, class).
    ``samples``: layer name -> sample name (else the layer's ``sample`` feature, else the
    spread's image name)."""
    samples = samples or {}
    frames = []
    for layer in layers:
        features = pd.DataFrame(layer.features)
        if "class" not in features.columns or features.empty:
            continue
        features = features.copy()
        if "status" in features.columns:
            features = features[features["status"].isna() | (features["status"] == "chromosome")]
        features["spread"] = layer.name
        if samples.get(layer.name):
            features["sample"] = samples[layer.name]
        elif "sample" not in features.columns or features["sample"].isna().all():
            features["sample"] = default_sample(layer.name)
        if CORRECTED in features.columns:  # calls corrected by hand (Review least sure)
            features[CORRECTED] = features[CORRECTED].fillna(False).astype(bool)
        extra = [c for c in features.columns if c in (CORRECTED, "called_by")]
        extra += [c for c in features.columns if str(c).startswith("p_")]
        frames.append(features[["sample", "spread", "class", *extra]])
    if not frames:
        raise ChromosortError(
            "none of the chosen Labels layers has a 'class' feature: run Predict first"
        )
    table = pd.concat(frames, ignore_index=True)
    table = table[table["class"].notna() & (table["class"].astype(str) != "")]
    return table


class ReadoutWidget(QWidget):
    """Type shares per sample (bars with intervals, spreads as dots) and the comparison of the
    samples with spreads as the replicates."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.table: pd.DataFrame | None = None
        self.summary: pd.DataFrame | None = None
        self.comparisons: list = []
        self.spreads: pd.DataFrame | None = None
        self.colours: dict[str, str] = {}

        self.source = QComboBox()
        self.source.addItems([LAYERS, TABLE])
        self.open_button = QPushButton("Open table…")
        self.open_button.clicked.connect(self._choose_table)
        self.table_label = QLabel("no table")
        self.layer_list = QTableWidget(0, 2)
        self.layer_list.setHorizontalHeaderLabels(["spread", "sample"])
        self.layer_list.verticalHeader().setVisible(False)
        self.layer_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.layer_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        header = self.layer_list.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)  # long names elided
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(1, 130)
        self.sample_col = QComboBox()
        self.class_col = QComboBox()
        self.reference = QComboBox()
        self.compute_button = QPushButton("Compute readout")
        self.compute_button.clicked.connect(self.compute)
        self.save_button = QPushButton("Save CSV + plots…")
        self.save_button.clicked.connect(self._choose_save)
        self.save_button.setEnabled(False)
        self._set_tooltips()

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
        session_of(napari_viewer).calls_changed.connect(self._on_calls_changed)
        self._source_changed()

    def _set_tooltips(self) -> None:
        """What each control does, shown on hover."""
        self.source.setToolTip(
            "Where the calls come from: the predicted-class layers open in napari, or a table "
            "saved by 'Predict folder' / Export CSV"
        )
        self.open_button.setToolTip("Open a table of calls (CSV), e.g. objects.csv of a batch run")
        self.layer_list.setToolTip(
            "The spreads (predicted-class layers) to count: tick them, and type a sample name "
            "(e.g. WT, mutant) beside each; spreads with the same sample name are pooled"
        )
        self.sample_col.setToolTip("The table column naming each chromosome's sample")
        self.class_col.setToolTip(
            "The table column holding each chromosome's class (type); only text columns with few "
            "values are offered"
        )
        self.reference.setToolTip("The sample the others are compared with (e.g. wild type)")
        self.compute_button.setToolTip(
            "Count the types per sample, plot them and test whether the samples differ, with the "
            "spreads as the replicates"
        )
        self.save_button.setToolTip("Save the counts, the tests and the plot to a folder")

    # ------------------------------------------------------------------ inputs
    def _source_changed(self, *_):
        layers = self.source.currentText() == LAYERS
        self.layer_list.setEnabled(layers)
        self.open_button.setEnabled(not layers)
        self.sample_col.setEnabled(not layers)
        self.class_col.setEnabled(not layers)

    def spread_rows(self) -> list[tuple[str, bool, str]]:
        """(layer name, ticked, sample name) of every row of the spreads table."""
        rows = []
        for r in range(self.layer_list.rowCount()):
            spread, sample = self.layer_list.item(r, 0), self.layer_list.item(r, 1)
            ticked = spread.checkState() == Qt.CheckState.Checked
            rows.append((spread.text(), ticked, sample.text().strip() if sample else ""))
        return rows

    def set_sample(self, layer_name: str, sample: str) -> None:
        """Name the sample of a spread (as typing in its row does)."""
        for r in range(self.layer_list.rowCount()):
            if self.layer_list.item(r, 0).text() == layer_name:
                self.layer_list.item(r, 1).setText(sample)
                return
        raise ChromosortError(f"no spread layer named {layer_name}")

    def _refresh_layers(self, *_):
        before = {name: (ticked, sample) for name, ticked, sample in self.spread_rows()}
        layers = [layer for layer in self.viewer.layers if isinstance(layer, Labels)]
        self.layer_list.setRowCount(len(layers))
        for r, layer in enumerate(layers):
            has_class = "class" in getattr(layer, "features", pd.DataFrame()).columns
            ticked, sample = before.get(layer.name, (has_class, default_sample(layer.name)))
            spread = QTableWidgetItem(layer.name)
            spread.setFlags(
                (spread.flags() | Qt.ItemFlag.ItemIsUserCheckable) & ~Qt.ItemFlag.ItemIsEditable
            )
            spread.setCheckState(Qt.CheckState.Checked if ticked else Qt.CheckState.Unchecked)
            self.layer_list.setItem(r, 0, spread)
            self.layer_list.setItem(r, 1, QTableWidgetItem(sample))
        fit_table_to_rows(self.layer_list)

    def _on_calls_changed(self, layer_name: str) -> None:
        """Calls of a spread changed (Predict, a correction, Retrain): a readout computed from
        the layers, that spread among them, is computed again."""
        try:
            self._refresh_layers()
        except RuntimeError:  # the widget was closed (its Qt object deleted): stop listening
            session_of(self.viewer).calls_changed.disconnect(self._on_calls_changed)
            return
        ticked = {name for name, on, _ in self.spread_rows() if on}
        if (
            self.summary is not None
            and self.source.currentText() == LAYERS
            and layer_name in ticked
        ):
            self.compute()

    def showEvent(self, event):  # noqa: N802 - Qt's name
        """Rows take their final height once styled and shown: size the table to them then."""
        super().showEvent(event)
        fit_table_to_rows(self.layer_list)

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
        self.sample_col.clear()
        self.sample_col.addItems([str(c) for c in table.columns])
        if "sample" in table.columns:
            self.sample_col.setCurrentText("sample")
        self.class_col.clear()
        self.class_col.addItems(class_columns(table))

    def current_table(self) -> tuple[pd.DataFrame, str, str]:
        """The calls to read out with their sample and class column names: from the ticked Labels
        layers or the opened table."""
        if self.source.currentText() == LAYERS:
            rows = [(name, sample) for name, ticked, sample in self.spread_rows() if ticked]
            layers = [self.viewer.layers[n] for n, _ in rows if n in self.viewer.layers]
            if not layers:
                raise ChromosortError("tick at least one Labels layer with predictions")
            table = table_from_layers(layers, dict(rows))
            order = class_order(layers)
            order += sorted(set(table["class"].astype(str)) - set(order))
            self.colours = class_colours(order)
            return table, "sample", "class"
        if self.table is None:
            raise ChromosortError("open a predictions table first")
        if self.class_col.currentText() not in class_columns(self.table):
            raise ChromosortError(
                "choose a class column: a column of text with a few values (e.g. 'class'), not "
                "numbers such as areas or probabilities"
            )
        probabilities = [c[2:] for c in self.table.columns if str(c).startswith("p_")]
        self.colours = class_colours(probabilities)  # the model's order, as on the spread
        return self.table, self.sample_col.currentText(), self.class_col.currentText()

    # ------------------------------------------------------------------ compute
    def compute(self) -> None:
        """Summarize and compare the samples; draw the stacked bar and write the comparisons."""
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
            lines = readout.sample_lines(summary) + readout.comparison_lines(table, comparisons)
            self.spreads = readout.spread_summary(table, sample_col, class_col)
        except ChromosortError as error:
            report_error(error, "Readout")
            return
        self.summary, self.comparisons = summary, comparisons
        plots.stacked_bar(
            summary,
            comparisons=comparisons,
            fig=self.figure,
            colours=self.colours,
            spreads=self.spreads,
        )
        self.canvas.draw_idle()
        if CORRECTED in table.columns:
            n = int(table[CORRECTED].fillna(False).astype(bool).sum())
            lines.append(f"{n} of {len(table)} calls corrected by hand")
        self.result_label.setText("\n\n".join(lines))
        self.save_button.setEnabled(True)

    def _choose_save(self):
        folder = QFileDialog.getExistingDirectory(self, "Save readout to folder")
        if folder:
            self.save(folder)

    def save(self, folder) -> list[Path]:
        """Write ``summary.csv``, ``comparisons.csv`` and the stacked-bar figure (PNG, SVG) to
        ``folder``; returns the paths."""
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
        fig = plots.stacked_bar(
            self.summary, comparisons=self.comparisons, colours=self.colours, spreads=self.spreads
        )
        files += plots.save_figure(fig, folder / "stacked_bar")
        show_info(f"readout saved to {folder}")
        return files


class ReadoutDock(ScrollDock):
    """The ReadoutWidget in a scroll area: what napari docks (Plugins menu)."""

    def __init__(self, napari_viewer):
        super().__init__(ReadoutWidget(napari_viewer))
