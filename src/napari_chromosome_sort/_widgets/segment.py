"""Segment spread: objects + status (kept chromosome vs nucleus/cluster/debris/border)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from napari_chromosome_sort._widgets._common import (
    KEPT,
    STATUS_COLOURS,
    LayerPicker,
    ScrollDock,
    dataclass_form,
    feature_row,
    label_at,
    layer_image,
    main_fields,
    sync_features,
    with_index,
)
from napari_chromosome_sort._widgets._objects import UNDO_KEY, review_colormap, review_of
from napari_chromosome_sort._widgets.segment_learning import (
    CHANGE_COLOURS,
    SegmentLearningPanel,
    segment_compared,
)
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.segmentation.learned import (
    P_COLUMN,
    ModelChanges,
    SegmentationModel,
    least_sure_first,
    model_probabilities,
)
from napari_chromosome_sort.segmentation.params import SegmentationParams

META_KEY = "chromosort"
#: the order Next ▶ goes through the objects: those worth a look first, by status
REVIEW_ORDER = (
    "cluster",
    "crossing-resolved",
    "chromosome",
    "rejected",
    "nucleus",
    "border",
    "debris",
)
#: what Next ▶ / ◀ Previous step through (None: every object, in REVIEW_ORDER)
STEP_FILTERS = {
    "chromosomes": ("chromosome", "crossing-resolved"),
    "clusters": ("cluster", "crossing-resolved"),
    "rejected": ("rejected",),
    "every object": None,
}
OUTLINE = 2  # status outline thickness: the chromosome's morphology stays visible
KEYS_HELP = f"Keys on the objects layer: K keep · R reject · {UNDO_KEY} undo"
#: SegmentationParams shown in the widget's main form (the others under "Advanced")
MAIN_PARAMETERS = main_fields(SegmentationParams)


def _segment(image: np.ndarray, params):
    from napari_chromosome_sort.segmentation import segment_spread

    return segment_spread(image, params)


def review_labels(features) -> list[int]:
    """Object labels in review order: by status (REVIEW_ORDER), then top to bottom (the
    built-in rules' order; a layer segmented with a model is reviewed least sure first)."""
    if not len(features) or "status" not in features:
        return []
    rank = {status: i for i, status in enumerate(REVIEW_ORDER)}
    table = features.assign(_rank=features["status"].map(rank).fillna(len(rank)))
    by = ["_rank", "centroid_y", "label"] if "centroid_y" in table else ["_rank", "label"]
    return table.sort_values(by)["label"].astype(int).tolist()


def layer_model(layer) -> SegmentationModel | None:
    """The segmentation model an objects layer was segmented with, or None (the rules)."""
    data = layer.metadata.get(META_KEY, {}).get("model") if layer is not None else None
    if not data:
        return None
    try:
        return SegmentationModel.from_dict(data)
    except ChromosortError:
        return None


def is_segmentation_layer(layer) -> bool:
    """Is ``layer`` an objects layer made by Segment spread?"""
    return isinstance(layer, Labels) and layer.metadata.get(META_KEY, {}).get("kind") in (
        "segmentation",
        "prediction",
    )


class SegmentWidget(QWidget):
    """Pick an image layer, tune SegmentationParams (live preview), then review objects.

    Result: a Labels layer ``<image> objects`` whose ``features`` hold status, reason and shape
    measures, coloured by status. Select an object (click it, or step with Next/Previous) and
    press K (keep) / R (reject), or use the buttons; Ctrl+Z or Undo takes a step back. Merge/split
    with napari's own label tools: features follow, edited objects get a new shade.

    Learn from this spread (:mod:`.segment_learning`) learns a model from the reviewed layer;
    segmenting with a chosen model shows what it changed against the rules, and Next/Previous
    then go least sure first.
    """

    def __init__(self, napari_viewer):
        super().__init__()

        self.viewer = napari_viewer
        self.worker = None
        self._pending = False
        self._selected = 0
        self._connected: set[int] = set()

        self.image_picker = LayerPicker(napari_viewer, (Image,))
        self.image_picker.combo.setToolTip(
            "The metaphase spread to segment (Giemsa or DAPI, grey or colour)"
        )
        # the few knobs a user may need, in view; every other one folded under "Advanced"
        self.form, self._read_main, main_widgets = dataclass_form(
            SegmentationParams,
            keep=MAIN_PARAMETERS,
            on_change=self._params_changed,
        )
        self.advanced_form, self._read_advanced, advanced_widgets = dataclass_form(
            SegmentationParams, skip=MAIN_PARAMETERS, on_change=self._params_changed
        )
        self.param_widgets = {**main_widgets, **advanced_widgets}
        self.live = QCheckBox("Live preview")
        self.live.setToolTip(
            "Re-segment automatically (in the background) when a parameter changes"
        )
        self.run_button = QPushButton("Segment")
        self.run_button.setToolTip("Segment the chosen image layer into objects")
        self.keep_button = QPushButton("Keep (K)")
        self.keep_button.setToolTip("Mark the selected object as a chromosome to keep")
        self.reject_button = QPushButton("Reject (R)")
        self.reject_button.setToolTip("Mark the selected object as rejected")
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip(
            f"Undo the last keep/reject or paint edit on the objects layer ({UNDO_KEY})"
        )
        self.prev_button = QPushButton("◀ Previous")
        self.next_button = QPushButton("Next ▶")
        self.prev_button.setToolTip("Go back to the previous object and zoom to it")
        self.next_button.setToolTip(
            "Zoom to the next object of the kind chosen beside: kept chromosomes by default; "
            "every object: clusters first, then chromosomes, rejected, nuclei…; segmented with a "
            "model: the objects it is least sure about first"
        )
        self.step_filter = QComboBox()
        self.step_filter.addItems(list(STEP_FILTERS))
        self.step_filter.setToolTip("Which objects Next ▶ and ◀ Previous step through")
        self.keys_help = QLabel(KEYS_HELP)
        self.keys_help.setWordWrap(True)
        self.keys_help.setToolTip(
            "These keys work while the objects layer is selected in the layer list; napari's own "
            "label tools stay on the toolbar buttons"
        )
        self.sync_button = QPushButton("Update after edits")
        self.sync_button.setToolTip(
            "Re-measure objects after merging/splitting/painting with napari's label tools"
        )
        self.selection_label = QLabel("Click an object to select it.")
        self.selection_label.setWordWrap(True)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        legend = "  ".join(
            f'<span style="color:{colour}">■</span> {status}'
            for status, colour in STATUS_COLOURS.items()
        )
        self.legend = QLabel(legend + "<br>A new shade of a colour: an object you edited by hand.")
        self.legend.setWordWrap(True)

        self.learning = SegmentLearningPanel(
            reviewed=self._reviewed_for_learning,
            base_params=self.params,
            on_model_changed=self._params_changed,
        )
        self.model_summary = QLabel("")
        self.model_summary.setWordWrap(True)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(500)
        self._debounce.timeout.connect(self.run)

        top = QFormLayout()
        top.addRow("Image", self.image_picker.combo)
        top.addRow("Segment with", self.learning.choice)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        # Every knob adapts to the image by default; the rarely needed ones stay folded away.
        layout.addWidget(self.form.native)
        self.parameters = QCollapsible("Advanced parameters (defaults adapt to each image)", self)
        self.parameters.addWidget(self.advanced_form.native)
        self.parameters.collapse(animate=False)
        self.parameters.setToolTip(
            "Settings that rarely need changing; each one adapts to the image by default"
        )
        layout.addWidget(self.parameters)
        row = QHBoxLayout()
        row.addWidget(self.live)
        row.addWidget(self.run_button)
        layout.addLayout(row)
        layout.addWidget(self.summary)
        layout.addWidget(self.model_summary)
        layout.addWidget(self.legend)
        layout.addWidget(self.selection_label)
        row = QHBoxLayout()
        row.addWidget(self.prev_button)
        row.addWidget(self.next_button)
        row.addWidget(self.step_filter)
        layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.keep_button)
        row.addWidget(self.reject_button)
        row.addWidget(self.undo_button)
        layout.addLayout(row)
        layout.addWidget(self.keys_help)
        layout.addWidget(self.sync_button)
        layout.addWidget(QLabel("<b>Learn from your corrections</b>"))
        layout.addWidget(self.learning)
        layout.addStretch(1)

        self.run_button.clicked.connect(self.run)
        self.keep_button.clicked.connect(lambda: self.set_status(None, KEPT))
        self.reject_button.clicked.connect(lambda: self.set_status(None, "rejected"))
        self.undo_button.clicked.connect(self.undo)
        self.prev_button.clicked.connect(lambda: self.step(-1))
        self.next_button.clicked.connect(lambda: self.step(1))
        self.sync_button.clicked.connect(self.sync)
        self.image_picker.combo.currentIndexChanged.connect(self._params_changed)
        napari_viewer.layers.events.inserted.connect(self._adopt)
        self._adopt()

    # ------------------------------------------------------------------ running
    def params(self):
        """The segmentation settings the form shows."""
        main = self._read_main()
        return dataclasses.replace(
            self._read_advanced(), **{name: getattr(main, name) for name in MAIN_PARAMETERS}
        )

    def _params_changed(self, *_):
        if self.live.isChecked():
            self._debounce.start()

    @property
    def running(self) -> bool:
        """Is a segmentation running?"""
        return self.worker is not None

    def run(self):
        """Segment the chosen image in a background thread (re-run later if already busy)."""
        image_layer = self.image_picker.layer()
        if image_layer is None:
            from napari.utils.notifications import show_error

            show_error("Segment spread: open an image first (File > Open, or the sample spread).")
            return
        if self.running:
            self._pending = True
            return
        from napari_chromosome_sort._widgets._common import start_worker

        self.run_button.setEnabled(False)
        self.run_button.setText("Segmenting…")
        params = self.params()
        model = self.learning.model()
        if model is None:
            self.worker = start_worker(
                _segment,
                layer_image(image_layer),
                params,
                on_return=lambda seg: self._show(image_layer, seg),
                on_finish=self._finished,
                what="Segment spread",
            )
            return
        name = self.learning.model_name()
        self.worker = start_worker(
            segment_compared,
            layer_image(image_layer),
            params,
            model,
            on_yield=lambda report: self.run_button.setText(report.message),
            on_return=lambda result: self._show(image_layer, result[0], model, name, result[1]),
            on_finish=self._finished,
            what="Segment spread",
        )

    def _finished(self):
        self.worker = None
        self.run_button.setEnabled(True)
        self.run_button.setText("Segment")
        if self._pending:
            self._pending = False
            self.run()

    def _show(
        self,
        image_layer,
        segmentation,
        model: SegmentationModel | None = None,
        model_name: str = "",
        changes: ModelChanges | None = None,
    ):
        name = f"{image_layer.name} objects"
        features = with_index(segmentation.objects)
        if model is not None:
            features[P_COLUMN] = np.round(model_probabilities(segmentation.objects, model), 3)
        meta = {
            META_KEY: {
                "kind": "segmentation",
                "image_layer": image_layer.name,
                "polarity": getattr(segmentation, "polarity", None),
                # a noisy spread is denoised for segmentation; its crops must be too
                "denoised": bool(getattr(segmentation, "stats", {}).get("denoised")),
                "params": dataclasses.asdict(segmentation.params)
                if dataclasses.is_dataclass(getattr(segmentation, "params", None))
                else {},
                # the model that decided (None: the rules), for review in order of its doubt
                "model": json.loads(model.to_json()) if model is not None else None,
                "model_name": model_name,
                "model_changes": changes.summary() if changes is not None else "",
            }
        }
        labels = np.asarray(segmentation.labels, dtype=np.int32)
        if name in self.viewer.layers and isinstance(self.viewer.layers[name], Labels):
            layer = self.viewer.layers[name]
            # a new segmentation: earlier steps cannot be undone on it
            review_of(self.viewer, layer).history.steps.clear()
            layer._reset_history()
            layer.data = labels
            layer.features = features
            layer.metadata.update(meta)
        else:
            layer = self.viewer.add_labels(
                labels,
                name=name,
                features=features,
                metadata=meta,
                opacity=1.0,
                scale=image_layer.scale[-2:],
                translate=image_layer.translate[-2:],
            )
            layer.contour = OUTLINE  # outlines, not fills: what decides A, B or C stays seen
            self._connect(layer)
        self.layer = layer
        self._selected = 0  # a new segmentation: Next ▶ starts from its first object
        self._show_changes(image_layer, layer, changes, segmentation.objects)
        self._table_changed()

    def _show_changes(self, image_layer, layer, changes: ModelChanges | None, objects) -> None:
        """A points layer ``<image> model changes`` marking what the model changed against the
        rules (removed when the rules segmented)."""
        name = f"{image_layer.name} model changes"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        if changes is None or changes.objects.empty:
            return
        kept = objects.loc[objects["status"] == "chromosome", "area"]
        size = 1.5 * float(np.sqrt(np.median(kept))) if len(kept) else 20.0
        table = changes.objects
        self.viewer.add_points(
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
        self.viewer.layers.selection.active = layer  # keys and clicks stay on the objects

    def _reviewed_for_learning(self):
        """(objects layer, its image layer) brought up to date after edits, or why not."""
        layer = self.current_layer()
        if layer is None:
            return "segment a spread and review its objects first"
        image_name = layer.metadata.get(META_KEY, {}).get("image_layer")
        if image_name not in self.viewer.layers or not isinstance(
            self.viewer.layers[image_name], Image
        ):
            return f"the image of {layer.name} ({image_name}) is no longer open"
        sync_features(layer)
        self._table_changed()
        return layer, self.viewer.layers[image_name]

    def _adopt(self, event=None) -> None:
        """Take over objects layers that came from elsewhere (a reopened work folder): keys,
        clicks, undo and status colours, as for the layers this widget made."""
        layers = [event.value] if event is not None else list(self.viewer.layers)
        for layer in layers:
            kind = (
                layer.metadata.get(META_KEY, {}).get("kind") if isinstance(layer, Labels) else None
            )
            if kind == "segmentation" and id(layer) not in self._connected:
                self._connect(layer)
                self.layer = layer
                self._table_changed()

    def _connect(self, layer):
        if id(layer) in self._connected:
            return
        self._connected.add(id(layer))
        layer.mouse_drag_callbacks.append(self._on_click)
        review = review_of(self.viewer, layer)
        review.bind("k", lambda _layer: self.set_status(None, KEPT))
        review.bind("r", lambda _layer: self.set_status(None, "rejected"))
        review.describe("K", "keep")
        review.describe("R", "reject")
        review.listen(self._table_changed)
        layer.events.paint.connect(lambda *_: QTimer.singleShot(300, self.sync))

    def _table_changed(self):
        """Recolour the objects and refresh the counts after the table changed."""
        layer = self.current_layer()
        if layer is None:
            return
        layer.colormap = review_colormap(np.asarray(layer.data), layer.features)
        self._update_summary()
        if self._selected:
            self.select(self._selected, layer)

    # ------------------------------------------------------------------ review
    def current_layer(self):
        """The objects layer under review, or None."""
        layer = getattr(self, "layer", None)
        if layer is not None and layer in self.viewer.layers:
            return layer
        active = self.viewer.layers.selection.active
        return active if is_segmentation_layer(active) else None

    def _on_click(self, layer, event):
        if layer.mode != "pan_zoom":
            return
        label = label_at(layer, event.position)
        if label:
            self.select(label, layer)

    def select(self, label: int, layer=None):
        """Outline object ``label`` of the objects layer, zoom to it and show its details."""
        layer = layer or self.current_layer()
        self._selected = int(label)
        if layer is not None:
            review_of(self.viewer, layer).select(label)
            row = feature_row(layer, label)
            if row:
                p = row.get(P_COLUMN)
                shown = p is None or not np.isfinite(p) or "p=" in str(row.get("reason", ""))
                doubt = "" if shown else f"; model p={p:.2f}"
                self.selection_label.setText(
                    f"Object {label}: <b>{row.get('status')}</b> — {row.get('reason', '')}"
                    f" (area {row.get('area', 0):.0f} px{doubt})"
                )

    def step(self, direction: int):
        """Select the next/previous object of the statuses chosen in "Step through" (from the
        selected one, wherever its status put it) and zoom the view to it."""
        layer = self.current_layer()
        if layer is None:
            return
        wanted = STEP_FILTERS[self.step_filter.currentText()]
        order = self.review_order(layer, by_status=wanted is None)
        features = layer.features
        status = dict(zip(features["label"].astype(int), features["status"], strict=True))
        allowed = {label for label in order if wanted is None or status.get(label) in wanted}
        if not allowed:
            return
        if self._selected in order:
            start = order.index(self._selected)
            ring = [order[(start + direction * k) % len(order)] for k in range(1, len(order) + 1)]
            label = next(label for label in ring if label in allowed)
        else:
            label = [x for x in order if x in allowed][0 if direction > 0 else -1]
        self.select(label, layer)
        review_of(self.viewer, layer).focus(label)

    def review_order(self, layer, by_status: bool = True) -> list[int]:
        """The labels in the order Next ▶ visits them: least sure first for a layer segmented
        with a model (``least_sure_first``), else by status (``review_labels``) or, without
        ``by_status``, top to bottom."""
        model = layer_model(layer)
        if model is None or not len(layer.features):
            features = layer.features
            if not by_status and "status" in features:
                features = features.assign(status=KEPT)  # one rank: top to bottom
            return review_labels(features)
        return least_sure_first(layer.features, model)["label"].astype(int).tolist()

    def undo(self):
        """Undo the last keep/reject or paint edit on the objects layer (as Ctrl+Z)."""
        layer = self.current_layer()
        if layer is not None:
            review_of(self.viewer, layer).undo()

    def set_status(self, label: int | None, status: str):
        """Keep or reject an object (default: the selected one); colours update at once."""
        layer = self.current_layer()
        if layer is None:
            return
        label = int(label if label is not None else (self._selected or layer.selected_label))
        features = layer.features.copy()
        mask = features["label"].astype(int) == label
        if not mask.any():
            sync_features(layer)
            features = layer.features.copy()
            mask = features["label"].astype(int) == label
            if not mask.any():
                return
        before = features.loc[mask, ["status", "reason"]].iloc[0].tolist()
        features.loc[mask, "status"] = status
        features.loc[mask, "reason"] = "kept by user" if status == KEPT else "rejected by user"
        layer.features = features
        review_of(self.viewer, layer).record(
            f"{status} object {label}", lambda: self._restore_status(layer, label, *before)
        )
        self.select(label, layer)
        self._table_changed()

    def _restore_status(self, layer, label: int, status: str, reason: str):
        features = layer.features.copy()
        mask = features["label"].astype(int) == label
        features.loc[mask, "status"] = status
        features.loc[mask, "reason"] = reason
        layer.features = features
        self._selected = label

    def sync(self):
        """Re-measure after hand edits (merge/split/paint), keeping user-set statuses."""
        layer = self.current_layer()
        if layer is None:
            return
        sync_features(layer)
        self._table_changed()

    def _update_summary(self):
        layer = self.current_layer()
        if layer is None or not len(layer.features):
            self.summary.setText("No objects.")
            return
        counts = layer.features["status"].value_counts()
        parts = [f"{counts.get(s, 0)} {s}" for s in STATUS_COLOURS if counts.get(s, 0)]
        text = f"<b>{len(layer.features)} objects</b>: " + ", ".join(parts)
        meta = layer.metadata.get(META_KEY, {})
        if meta.get("denoised"):
            text += " (noisy image: denoised before segmenting, and so are its crops)"
        self.summary.setText(text)
        if meta.get("model"):
            marks = f"{meta.get('image_layer')} model changes"
            where = f" (marked in the layer '{marks}')" if marks in self.viewer.layers else ""
            self.model_summary.setText(
                f"Segmented with {meta.get('model_name') or 'a learned model'} — "
                f"{meta.get('model_changes', '')}{where}. Next ▶ shows the objects the model "
                "is least sure about first."
            )
        else:
            self.model_summary.setText("")


class SegmentDock(ScrollDock):
    """The SegmentWidget in a scroll area: what napari docks (Plugins menu)."""

    def __init__(self, napari_viewer):
        super().__init__(SegmentWidget(napari_viewer))
