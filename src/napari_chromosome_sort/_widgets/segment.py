"""Segment spread: objects + status (kept chromosome vs nucleus/cluster/debris/border)."""

from __future__ import annotations

import dataclasses

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from napari_chromosome_sort._widgets.segment_learning import (
    SegmentLearningPanel,
    layer_model,
    segment_compared,
    segmentation_layer_data,
    show_model_changes,
)
from napari_chromosome_sort._widgets.shared.docks import ScrollDock
from napari_chromosome_sort._widgets.shared.forms import (
    dataclass_form,
    layer_combo,
    main_fields,
    push_button,
)
from napari_chromosome_sort._widgets.shared.layers import (
    KEPT,
    META_KEY,
    STATUS_COLOURS,
    feature_row,
    is_segmentation_layer,
    label_at,
    layer_image,
    review_colormap,
    sync_features,
)
from napari_chromosome_sort._widgets.shared.objects import (
    STEP_FILTERS,
    UNDO_KEY,
    review_labels,
    review_of,
    ring_step,
)
from napari_chromosome_sort._widgets.shared.workers import start_worker
from napari_chromosome_sort.segmentation import segment_spread
from napari_chromosome_sort.segmentation.learned import (
    P_COLUMN,
    ModelChanges,
    SegmentationModel,
    least_sure_first,
)
from napari_chromosome_sort.segmentation.params import SegmentationParams

OUTLINE = 2  # status outline thickness: the chromosome's morphology stays visible
KEYS_HELP = f"Keys on the objects layer: K keep · R reject · {UNDO_KEY} undo"
#: SegmentationParams shown in the widget's main form (the others under "Advanced")
MAIN_PARAMETERS = main_fields(SegmentationParams)


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
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(500)
        self._debounce.timeout.connect(self.run)
        self._build_segmenting()
        self._build_review()
        self.learning = SegmentLearningPanel(
            reviewed=self._reviewed_for_learning,
            base_params=self.params,
            on_model_changed=self._params_changed,
        )
        self.model_summary = QLabel("")
        self.model_summary.setWordWrap(True)
        self._lay_out()
        napari_viewer.layers.events.inserted.connect(self._adopt)
        self._adopt()

    def _build_segmenting(self) -> None:
        """The image, the parameters (the few a user may need in view, every other one folded
        under "Advanced"), live preview and the Segment button."""
        self.image_picker = layer_combo(
            self.viewer, Image, "The metaphase spread to segment (Giemsa or DAPI, grey or colour)"
        )
        self.image_picker.changed.connect(self._params_changed)
        self.form, self._read_main, main_widgets = dataclass_form(
            SegmentationParams, keep=MAIN_PARAMETERS, on_change=self._params_changed
        )
        self.advanced_form, self._read_advanced, advanced_widgets = dataclass_form(
            SegmentationParams, skip=MAIN_PARAMETERS, on_change=self._params_changed
        )
        self.param_widgets = {**main_widgets, **advanced_widgets}
        self.parameters = QCollapsible("Advanced parameters (defaults adapt to each image)", self)
        self.parameters.addWidget(self.advanced_form.native)
        self.parameters.collapse(animate=False)
        self.parameters.setToolTip(
            "Settings that rarely need changing; each one adapts to the image by default"
        )
        self.live = QCheckBox("Live preview")
        self.live.setToolTip(
            "Re-segment automatically (in the background) when a parameter changes"
        )
        self.run_button = push_button(
            "Segment", "Segment the chosen image layer into objects", self.run
        )
        self.summary = QLabel("")
        self.summary.setWordWrap(True)

    def _build_review(self) -> None:
        """Next/Previous, Keep/Reject/Undo, the selected object, the legend and key help."""
        self.keep_button = push_button(
            "Keep (K)",
            "Mark the selected object as a chromosome to keep",
            lambda: self.set_status(None, KEPT),
        )
        self.reject_button = push_button(
            "Reject (R)",
            "Mark the selected object as rejected",
            lambda: self.set_status(None, "rejected"),
        )
        self.undo_button = push_button(
            "Undo",
            f"Undo the last keep/reject or paint edit on the objects layer ({UNDO_KEY})",
            self.undo,
        )
        self.prev_button = push_button(
            "◀ Previous", "Go back to the previous object and zoom to it", lambda: self.step(-1)
        )
        self.next_button = push_button(
            "Next ▶",
            "Zoom to the next object of the kind chosen beside: kept chromosomes by default; "
            "every object: clusters first, then chromosomes, rejected, nuclei…; segmented with a "
            "model: the objects it is least sure about first",
            lambda: self.step(1),
        )
        self.step_filter = QComboBox()
        self.step_filter.addItems(list(STEP_FILTERS))
        self.step_filter.setToolTip("Which objects Next ▶ and ◀ Previous step through")
        self.sync_button = push_button(
            "Update after edits",
            "Re-measure objects after merging/splitting/painting with napari's label tools",
            self.sync,
        )
        self.keys_help = QLabel(KEYS_HELP)
        self.keys_help.setWordWrap(True)
        self.keys_help.setToolTip(
            "These keys work while the objects layer is selected in the layer list; napari's own "
            "label tools stay on the toolbar buttons"
        )
        self.selection_label = QLabel("Click an object to select it.")
        self.selection_label.setWordWrap(True)
        legend = "  ".join(
            f'<span style="color:{colour}">■</span> {status}'
            for status, colour in STATUS_COLOURS.items()
        )
        self.legend = QLabel(legend + "<br>A new shade of a colour: an object you edited by hand.")
        self.legend.setWordWrap(True)

    def _lay_out(self) -> None:
        """Segmenting and reviewing in view; the learning panel and the help folded into
        sections, so the widget keeps its working rows visible when other docks share the
        height."""
        top = QFormLayout()
        top.addRow("Image", self.image_picker.native)
        top.addRow("Segment with", self.learning.choice)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.form.native)
        layout.addWidget(self.parameters)
        layout.addLayout(_row(self.live, self.run_button))
        layout.addWidget(self.summary)
        layout.addWidget(self.model_summary)
        layout.addWidget(self.selection_label)
        layout.addLayout(_row(self.prev_button, self.next_button, self.step_filter))
        layout.addLayout(_row(self.keep_button, self.reject_button, self.undo_button))
        self.help_section = QCollapsible("Colours and keys", self)
        for widget in (self.legend, self.keys_help, self.sync_button):
            self.help_section.addWidget(widget)
        self.help_section.collapse(animate=False)
        self.help_section.setToolTip("What the colours mean, the keys, re-measuring after edits")
        layout.addWidget(self.help_section)
        self.learning_section = QCollapsible("Learn from your corrections", self)
        self.learning_section.addWidget(self.learning)
        self.learning_section.collapse(animate=False)
        self.learning_section.setToolTip(
            "Learn a segmentation model from the spreads you reviewed, save or load one"
        )
        layout.addWidget(self.learning_section)
        layout.addStretch(1)

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
        image_layer = self.image_picker.value
        if image_layer is None:
            show_error("Segment spread: open an image first (File > Open, or the sample spread).")
            return
        if self.running:
            self._pending = True
            return
        self.run_button.setEnabled(False)
        self.run_button.setText("Segmenting…")
        params = self.params()
        model = self.learning.model()
        if model is None:
            self.worker = start_worker(
                segment_spread,
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
        features, meta = segmentation_layer_data(
            image_layer.name, segmentation, model, model_name, changes
        )
        labels = np.asarray(segmentation.labels, dtype=np.int32)
        if name in self.viewer.layers and isinstance(self.viewer.layers[name], Labels):
            layer = self.viewer.layers[name]
            review_of(self.viewer, layer).replace_labels(labels)  # nothing to undo on it
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
        show_model_changes(self.viewer, image_layer.name, layer, changes, segmentation.objects)
        self._table_changed()

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
        label = ring_step(order, allowed, self._selected, direction)
        if label is not None:
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
        reason = "kept by user" if status == KEPT else "rejected by user"
        changed = review_of(self.viewer, layer).set_values(
            label,
            {"status": status, "reason": reason},
            f"{status} object {label}",
            on_undo=lambda: setattr(self, "_selected", label),
        )
        if changed:
            self.select(label, layer)
            self._table_changed()

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


def _row(*widgets) -> QHBoxLayout:
    row = QHBoxLayout()
    for widget in widgets:
        row.addWidget(widget)
    return row


class SegmentDock(ScrollDock):
    """The SegmentWidget in a scroll area: what napari docks (Plugins menu)."""

    def __init__(self, napari_viewer):
        super().__init__(SegmentWidget(napari_viewer))
