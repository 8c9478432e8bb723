"""Label chromosomes: click an object, press 1-9 (0 clears); every label saved at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from magicgui.widgets import FileEdit
from napari.layers import Image, Labels
from napari.utils.notifications import show_error
from qtpy.QtWidgets import (
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_chromosome_sort._widgets.shared.docks import ScrollDock, rgb_pixmap
from napari_chromosome_sort._widgets.shared.forms import layer_combo, push_button
from napari_chromosome_sort._widgets.shared.layers import (
    META_KEY,
    class_legend,
    feature_row,
    kept_labels,
    label_at,
    layer_image,
    sync_features,
)
from napari_chromosome_sort._widgets.shared.objects import UNDO_KEY, review_of
from napari_chromosome_sort._widgets.shared.workers import report_error
from napari_chromosome_sort.crops import crop_object
from napari_chromosome_sort.display.colours import class_colours
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.dataset import CropDataset

DEFAULT_CLASSES = "A,B,C"
PREVIEW_SIDE = 280  # the selected chromosome's crop, large enough to judge A, B or C


def parse_classes(text: str) -> list[str]:
    """Class names from comma-separated text: 1 to 9 unique names, stripped."""
    classes = [c.strip() for c in text.replace(";", ",").split(",") if c.strip()]
    if len(classes) != len(set(classes)):
        raise ChromosortError(f"class names must be unique, got {text!r}")
    if not 1 <= len(classes) <= 9:
        raise ChromosortError("give 1 to 9 class names separated by commas (keys 1-9 assign)")
    return classes


def class_keys_hint(classes: list[str]) -> str:
    """What the number keys do, e.g. ``1 A · 2 B · 3 C · 0 clears``."""
    return " · ".join([f"{i + 1} {cls}" for i, cls in enumerate(classes)] + ["0 clears"])


class LabelWidget(QWidget):
    """Assign cohesion classes to kept chromosomes; crops go straight into a CropDataset.

    Next/Previous zoom to each kept chromosome; number keys (or buttons) assign a class; Undo
    or Ctrl+Z takes the last assignment back (its crop moves back too).
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.current = 0
        self._dataset = None
        self._bound_layer = None
        self._build_inputs()
        self._build_labelling()
        self._lay_out()
        self.labels_picker.changed.connect(self._labels_changed)
        self._classes_changed()
        self._labels_changed()

    def _build_inputs(self) -> None:
        """The objects and image layers, the dataset folder and the class names."""
        self.labels_picker = layer_combo(
            self.viewer,
            Labels,
            "The objects layer made by 'Segment spread': click its chromosomes to label them",
        )
        self.image_picker = layer_combo(
            self.viewer,
            Image,
            "The spread the crops are cut from (chosen for you from the objects layer)",
        )
        self.folder = FileEdit(mode="d", value=str(Path.home() / "chromosort_dataset"))
        self.folder.native.setToolTip(
            "Dataset folder (one sub-folder per class + manifest.csv); labels from several "
            "spreads accumulate here"
        )
        self.folder.changed.connect(lambda *_: self._reset_dataset())
        self.classes_edit = QLineEdit(DEFAULT_CLASSES)
        self.classes_edit.setToolTip("Class names separated by commas; key 1 = first class …")
        self.classes_edit.editingFinished.connect(self._classes_changed)
        self.swatches = QLabel()
        self.swatches.setToolTip("Class colours, as on the spread; the number is the class key")

    def _build_labelling(self) -> None:
        """Counts, the crop preview, Next/Previous, one button per class, Clear and Undo."""
        self.counts_label = QLabel()
        self.counts_label.setWordWrap(True)
        self.preview = QLabel()
        self.preview.setMinimumSize(PREVIEW_SIDE, PREVIEW_SIDE)
        self.info = QLabel("Click a chromosome on the spread, then press 1–9 (0 clears).")
        self.info.setWordWrap(True)
        self.prev_button = push_button(
            "◀ Previous", "Go to the previous kept chromosome and zoom to it", lambda: self.step(-1)
        )
        self.next_button = push_button(
            "Next ▶", "Go to the next kept chromosome and zoom to it", lambda: self.step(1)
        )
        self.class_buttons_box = QGridLayout()
        self.clear_button = push_button(
            "Clear (0)",
            "Remove the selected chromosome's label (its crop is deleted)",
            lambda: self.assign(None),
        )
        self.undo_button = push_button(
            "Undo",
            f"Take back the last class given or cleared, crop included ({UNDO_KEY})",
            self.undo,
        )
        self.keys_help = QLabel()
        self.keys_help.setWordWrap(True)
        self.keys_help.setToolTip(
            "These keys work while the objects layer is selected in the layer list; napari's "
            "label tools (usually on the number keys) stay on the toolbar buttons"
        )

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.addRow("Objects", self.labels_picker.native)
        form.addRow("Image", self.image_picker.native)
        form.addRow("Dataset", self.folder.native)
        form.addRow("Classes", self.classes_edit)
        form.addRow("", self.swatches)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.counts_label)
        layout.addWidget(self.preview)
        layout.addWidget(self.info)
        nav = QHBoxLayout()
        nav.addWidget(self.prev_button)
        nav.addWidget(self.next_button)
        layout.addLayout(nav)
        layout.addLayout(self.class_buttons_box)
        row = QHBoxLayout()
        row.addWidget(self.clear_button)
        row.addWidget(self.undo_button)
        layout.addLayout(row)
        layout.addWidget(self.keys_help)
        layout.addStretch(1)

    # ------------------------------------------------------------------ setup
    @property
    def classes(self) -> list[str]:
        """The class names typed in the widget."""
        return self._classes

    def _classes_changed(self):
        try:
            self._classes = parse_classes(self.classes_edit.text())
        except ChromosortError as error:
            report_error(error, "Label chromosomes")
            self._classes = parse_classes(DEFAULT_CLASSES)
        self.colours = class_colours(self._classes)
        self.swatches.setText(class_legend(self._classes, keys=True))
        while self.class_buttons_box.count():
            item = self.class_buttons_box.takeAt(0)
            button = item.widget()
            if button is not None:
                button.setParent(None)  # gone now, not at the next event-loop turn
                button.deleteLater()
        for i, cls in enumerate(self._classes):
            button = QPushButton(f"{i + 1}: {cls}")
            button.setToolTip(f"Label the selected chromosome as {cls} (key {i + 1})")
            button.setStyleSheet(f"border-left: 6px solid {self.colours[cls]};")
            button.clicked.connect(lambda _=False, c=cls: self.assign(c))
            self.class_buttons_box.addWidget(button, i // 3, i % 3)
        hint = class_keys_hint(self._classes)
        self.keys_help.setText(f"Keys on the objects layer: {hint} · {UNDO_KEY} undo")
        if self._bound_layer is not None:
            review_of(self.viewer, self._bound_layer).describe("0–9", f"class: {hint}")
        self._reset_dataset()

    def _reset_dataset(self):
        self._dataset = None
        self._update_counts()

    def dataset(self):
        """The CropDataset in the chosen folder (created on first use)."""
        if self._dataset is None:
            self._dataset = CropDataset(Path(str(self.folder.value)), classes=tuple(self.classes))
        return self._dataset

    def _labels_changed(self, *_):
        layer = self.labels_picker.value
        if layer is None or layer is self._bound_layer:
            return
        self._bound_layer = layer
        meta = layer.metadata.get(META_KEY, {})
        image_name = meta.get("image_layer")
        if image_name in self.viewer.layers:
            self.image_picker.value = self.viewer.layers[image_name]
        if self._on_click not in layer.mouse_drag_callbacks:
            layer.mouse_drag_callbacks.append(self._on_click)
        # Number keys on this layer assign classes (they override the layer's mode shortcuts;
        # the toolbar buttons still switch modes).
        review = review_of(self.viewer, layer)
        for key in range(10):
            review.bind(str(key), self._key_handler(key))
        review.describe("0–9", f"class: {class_keys_hint(self.classes)}")
        review.listen(self._table_changed)
        self.current = 0
        self._refresh_points()

    def _key_handler(self, key: int):
        def handler(_layer):
            """Give the selected object the key's class."""
            if key == 0:
                self.assign(None)
            elif key <= len(self.classes):
                self.assign(self.classes[key - 1])

        return handler

    # ------------------------------------------------------------------ selection
    def _on_click(self, layer, event):
        if layer.mode != "pan_zoom":
            return
        label = label_at(layer, event.position)
        if label:
            self.select(label)

    def select(self, label: int):
        """Show object ``label``: its crop, its class, and the view zoomed to it."""
        layer = self.labels_picker.value
        if layer is None:
            return
        self.current = int(label)
        review_of(self.viewer, layer).select(label)
        crop = self._crop(label)
        if crop is not None:
            self.preview.setPixmap(rgb_pixmap(crop.pixels, PREVIEW_SIDE))
        row = feature_row(layer, label) or {}
        assigned = row.get("class") if isinstance(row.get("class"), str) else ""
        assigned = assigned or "—"
        self.info.setText(
            f"Object {label} ({row.get('status', '?')}), class: <b>{assigned}</b>. "
            "Press 1–9 or a class button; 0 clears."
        )

    def step(self, direction: int):
        """Go to the next/previous kept chromosome and zoom the view to it."""
        layer = self.labels_picker.value
        if layer is None:
            return
        kept = kept_labels(layer)
        if not kept:
            return
        if self.current in kept:
            index = (kept.index(self.current) + direction) % len(kept)
        else:
            index = 0 if direction > 0 else len(kept) - 1
        label = kept[index]
        self.select(label)
        review_of(self.viewer, layer).focus(label)

    def _crop(self, label: int):
        image_layer = self.image_picker.value
        layer = self.labels_picker.value
        if image_layer is None or layer is None:
            return None
        try:
            meta = layer.metadata.get(META_KEY, {})
            return crop_object(
                layer_image(image_layer),
                np.asarray(layer.data),
                int(label),
                polarity=meta.get("polarity"),
                denoise=bool(meta.get("denoised")),
            )
        except Exception as error:  # noqa: BLE001 - shown to the user
            report_error(error, "Label chromosomes")
            return None

    # ------------------------------------------------------------------ assignment
    def undo(self):
        """Undo the last step on the objects layer (a class given or cleared, as Ctrl+Z)."""
        layer = self.labels_picker.value
        if layer is not None:
            review_of(self.viewer, layer).undo()

    def _table_changed(self):
        self._refresh_points()
        self._update_counts()
        if self.current:
            self.select(self.current)

    def assign(self, cls: str | None, label: int | None = None, record: bool = True):
        """Assign ``cls`` (None clears) to an object and save the change to the dataset now;
        ``record``: Undo/Ctrl+Z can take it back."""
        layer = self.labels_picker.value
        label = int(label if label is not None else self.current)
        if layer is None or not label:
            show_error("Label chromosomes: click a chromosome on the spread first.")
            return
        try:
            if feature_row(layer, label) is None:
                sync_features(layer)
            row = feature_row(layer, label) or {}
            previous_class = row.get("class") if isinstance(row.get("class"), str) else ""
            previous = row.get("dataset_file")
            previous = previous if isinstance(previous, str) and previous else None
            dataset = self.dataset()
            if cls is None:
                if previous:
                    dataset.remove(previous)
                file = ""
            elif previous:
                file = str(dataset.relabel(previous, cls) or previous)
            else:
                crop = self._crop(label)
                if crop is None:
                    return
                image_layer = self.image_picker.value
                source = str(getattr(image_layer.source, "path", None) or image_layer.name)
                bbox = tuple(
                    int(row[k]) for k in ("bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1") if k in row
                )
                file = str(
                    dataset.add(
                        crop.pixels, cls, source, label, bbox or None, polarity=crop.polarity
                    )
                )
        except Exception as error:  # noqa: BLE001 - shown to the user
            report_error(error, "Label chromosomes")
            return
        features = layer.features.copy()
        for column in ("class", "dataset_file"):
            if column not in features:
                features[column] = pd.Series([""] * len(features), dtype=object)
        mask = features["label"].astype(int) == label
        features.loc[mask, "class"] = cls or ""
        features.loc[mask, "dataset_file"] = file
        layer.features = features
        if record and (cls or "") != previous_class:
            review_of(self.viewer, layer).record(
                f"class {cls or 'cleared'} for object {label}",
                lambda: self._undo_assign(label, previous_class),
            )
        self._refresh_points()
        self._update_counts()
        self.select(label)

    def _undo_assign(self, label: int, previous_class: str):
        self.current = label
        self.assign(previous_class or None, label, record=False)

    def _update_counts(self):
        try:
            counts = self.dataset().counts() if Path(str(self.folder.value)).exists() else {}
        except Exception:  # noqa: BLE001 - counts are informative only
            counts = {}
        total = sum(counts.values()) if counts else 0
        parts = [
            f'<span style="color:{self.colours.get(c, "#fff")}">■</span> {c}: {counts.get(c, 0)}'
            for c in self.classes
        ]
        self.counts_label.setText(f"<b>{total} labelled</b> — " + "  ".join(parts))

    def _refresh_points(self):
        """A Points layer showing each labelled object's class name on the spread."""
        layer = self.labels_picker.value
        if layer is None:
            return
        name = f"{layer.name} classes"
        features = layer.features
        if "class" in features:
            done = features[features["class"].astype(str) != ""]
        else:
            done = features.iloc[:0]
        if "bbox_x1" in done:  # beside the chromosome (its box's top right), not on it
            coords = done[["bbox_y0", "bbox_x1"]].to_numpy(float)
        elif "centroid_y" in done:
            coords = done[["centroid_y", "centroid_x"]].to_numpy(float)
        else:
            coords = np.zeros((0, 2))
        point_features = (
            pd.DataFrame({"class": done["class"].astype(str).tolist()})
            if len(done)
            else pd.DataFrame({"class": pd.Series([], dtype=str)})
        )
        colours = [self.colours.get(c, "#ffffff") for c in point_features["class"]]
        text = {"string": "{class}", "color": "white", "size": 9, "anchor": "upper_left"}
        if name in self.viewer.layers:
            points = self.viewer.layers[name]
            points.data = coords
            points.features = point_features
            points.text = text
            if len(coords):
                points.face_color = colours
        elif len(coords):
            self.viewer.add_points(
                coords,
                name=name,
                features=point_features,
                text=text,
                size=6,
                face_color=colours,
                border_width=0,
                scale=layer.scale,
                translate=layer.translate,
            )
            self.viewer.layers.selection.active = layer


class LabelDock(ScrollDock):
    """The LabelWidget in a scroll area: what napari docks (Plugins menu)."""

    def __init__(self, napari_viewer):
        super().__init__(LabelWidget(napari_viewer))
