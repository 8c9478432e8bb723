"""What the review widgets share on one objects layer: undo, focus, highlight, key hints.

Segment spread and Label chromosomes may both work on the same ``<image> objects`` layer; they
share one :class:`ObjectLayerReview` per layer, so Ctrl+Z undoes the user's last step whichever
widget made it, and the status-bar hint lists every key the widgets bound there.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable

import numpy as np
from app_model.types import KeyCode, KeyMod

from napari_chromosome_sort._widgets.session import session_of
from napari_chromosome_sort._widgets.shared.layers import (
    camera,
    feature_row,
    label_at,
    sync_features,
    with_index,
)
from napari_chromosome_sort.segmentation.edits import EditHistory, restore_objects

UNDO_KEY = "Ctrl+Z"
SELECTED_COLOUR = "#ffff00"
HOVERED_COLOUR = "#ffffff"
#: share of the canvas an object fills after Next/Previous
FOCUS_FILL = 0.35

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


def review_of(viewer, layer) -> ObjectLayerReview:
    """The shared review state of an objects layer (created and wired on first use; kept in the
    viewer's session, so Segment, Label and Review share it)."""
    reviews = session_of(viewer).layer_state
    review = reviews.get(layer)
    if review is None:
        review = reviews[layer] = ObjectLayerReview(viewer, layer)
    return review


def review_labels(features) -> list[int]:
    """Object labels in review order: by status (REVIEW_ORDER), then top to bottom (the
    built-in rules' order; a layer segmented with a model is reviewed least sure first)."""
    if not len(features) or "status" not in features:
        return []
    rank = {status: i for i, status in enumerate(REVIEW_ORDER)}
    table = features.assign(_rank=features["status"].map(rank).fillna(len(rank)))
    by = ["_rank", "centroid_y", "label"] if "centroid_y" in table else ["_rank", "label"]
    return table.sort_values(by)["label"].astype(int).tolist()


def ring_step(order: list[int], allowed: set[int], current: int, direction: int) -> int | None:
    """The next (``direction`` 1) or previous (-1) label of ``allowed`` after ``current`` in
    ``order``, going round; from the start (or end) when ``current`` is not in it."""
    if not allowed:
        return None
    if current in order:
        start = order.index(current)
        ring = [order[(start + direction * k) % len(order)] for k in range(1, len(order) + 1)]
        return next(label for label in ring if label in allowed)
    return [x for x in order if x in allowed][0 if direction > 0 else -1]


def help_with_keys(help_text: str, taken: set[str], hints: dict[str, str]) -> str:
    """napari's status-bar hint without its entries for the ``taken`` keys, after ``hints``
    (``{shown key: what it does}``).

    napari writes the hint as ``use <2> for activate the paint brush, use <3> for …``; it has
    no public way to list or drop the keys in it, so the text is edited (its format is pinned by
    tests/test_napari_private.py).
    """
    taken = {key.lower() for key in taken}
    mine = [f"use <{key}> for {what}" for key, what in hints.items()]
    for entry in mine:
        help_text = help_text.replace(entry, "")
    entries = [e.strip() for e in help_text.split(",") if e.strip()]
    kept = [
        e
        for e in entries
        if not ((m := re.match(r"use <([^>]+)> for", e)) and m.group(1).lower() in taken)
    ]
    return ", ".join(mine + kept)


def zoom_to_fit(box_size, canvas_size, fill: float = FOCUS_FILL) -> float:
    """Camera zoom (canvas pixels per world unit) at which a box fills ``fill`` of the canvas."""
    box = np.maximum(np.asarray(box_size, float), 1.0)
    return float(fill * np.min(np.asarray(canvas_size, float) / box))


class ObjectLayerReview:
    """Undo history, key hints and the selected/hovered-object outline of one objects layer."""

    def __init__(self, viewer, layer):
        self.viewer = viewer
        self._layer = weakref.ref(layer)  # the registry must not keep a removed layer alive
        self.history = EditHistory()
        self.taken: set[str] = set()
        self.hints: dict[str, str] = {}
        self.listeners: list[Callable[[], None]] = []
        self.selected = 0
        self.hovered = 0
        self._depth = self._napari_depth()
        layer.events.paint.connect(self._painted)
        layer.events.set_data.connect(self._follow_napari_undo)
        layer.events.help.connect(self._rewrite_help)
        layer.mouse_move_callbacks.append(self._mouse_moved)
        self.bind(KeyMod.CtrlCmd | KeyCode.KeyZ, lambda _layer: self.undo())
        self.describe(UNDO_KEY, "undo")

    @property
    def layer(self):
        """The objects layer, or None once it has been removed."""
        return self._layer()

    # ------------------------------------------------------------------ keys
    def bind(self, key, handler: Callable) -> None:
        """Bind ``key`` on the layer; napari's hint no longer offers it for its own use."""
        self.layer.bind_key(key, handler, overwrite=True)
        if isinstance(key, str):
            self.taken.add(key)
        self._rewrite_help()

    def describe(self, shown: str, what: str) -> None:
        """Show ``use <shown> for what`` first in the layer's status-bar hint."""
        self.hints[shown] = what
        self._rewrite_help()

    def _rewrite_help(self, *_):
        text = help_with_keys(self.layer.help, self.taken, self.hints)
        if text != self.layer.help:
            self.layer.help = text
        if self.viewer.layers.selection.active is self.layer:
            self.viewer.help = self.layer.help

    # ------------------------------------------------------------------ undo
    def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when an undo changed the objects table."""
        if callback not in self.listeners:
            self.listeners.append(callback)

    def _changed(self):
        for callback in list(self.listeners):
            try:
                callback()
            except RuntimeError:  # the widget was closed (Qt object deleted)
                self.listeners.remove(callback)

    def record(self, description: str, undo: Callable[[], None]) -> None:
        """Remember a change to the objects table (a status, a class) and how to undo it."""
        self.history.add_change(description, undo)

    def set_values(
        self,
        label: int,
        values: dict[str, str],
        description: str,
        on_undo: Callable[[], None] | None = None,
    ) -> bool:
        """Set columns of object ``label``'s row (the table brought up to date first if the
        label is new), undoably; False when there is no such object."""
        if feature_row(self.layer, label) is None:
            sync_features(self.layer)
        row = feature_row(self.layer, label)
        if row is None:
            return False
        before = {column: row.get(column) for column in values}
        self._write(label, values)

        def undo():
            self._write(label, before)
            if on_undo is not None:
                on_undo()

        self.record(description, undo)
        return True

    def _write(self, label: int, values: dict) -> None:
        features = self.layer.features.copy()
        mask = features["label"].astype(int) == int(label)
        for column, value in values.items():
            features.loc[mask, column] = value
        self.layer.features = features

    def undo(self) -> str | None:
        """Undo the user's last step: a status/class change or a paint/fill edit."""
        while self.history.steps:
            step = self.history.steps[-1]
            if step.undo is not None:
                self.history.pop()
                step.undo()
                self._changed()
                return step.description
            if not self._napari_depth()[0]:  # the layer forgot it (new data)
                self.history.pop()
                continue
            self.layer.undo()
            self._follow_napari_undo()
            return step.description
        self.layer.undo()  # napari's own history (edits made before the widget was attached)
        self._follow_napari_undo()
        return None

    def replace_labels(self, labels: np.ndarray) -> None:
        """Give the layer a new label image (a new segmentation): no earlier step, the plugin's
        or napari's own paint/fill, can be undone on it."""
        self.history.steps.clear()
        # napari has no public way to forget a Labels layer's paint history (setting ``data``
        # keeps it, and its undo would paint old strokes on the new image) nor to ask how deep
        # it is (``_napari_depth``): these are the plugin's only private napari calls, pinned by
        # tests/test_napari_private.py so a napari that changes them fails there.
        self.layer._reset_history()
        self.layer.data = labels
        self._depth = self._napari_depth()

    def _napari_depth(self) -> tuple[int, int]:
        # private and read only: see replace_labels
        return len(self.layer._undo_history), len(self.layer._redo_history)

    def _painted(self, *_):
        self.history.add_label_edit(self.layer.features)
        self._depth = self._napari_depth()

    def _follow_napari_undo(self, *_):
        """After napari's undo/redo of a paint edit, make the objects table match the labels."""
        depth = self._napari_depth()
        if depth == self._depth:
            return
        (undo_before, redo_before), (undo_now, redo_now) = self._depth, depth
        self._depth = depth
        if undo_now == 0 and redo_now == 0:  # new label image: old edits are gone
            self.history.forget_label_edits()
            return
        labels = np.asarray(self.layer.data)
        if undo_now < undo_before and redo_now > redo_before:
            for _ in range(undo_before - undo_now):
                step = self.history.pop_label_edit()
                if step is not None:
                    self.layer.features = with_index(
                        restore_objects(labels, self.layer.features, step.table_before)
                    )
        else:  # redo
            self.history.add_label_edit(self.layer.features)
        sync_features(self.layer)
        self._changed()

    # ------------------------------------------------------------------ highlight
    def select(self, label: int) -> None:
        """Mark object ``label`` as selected and outline it."""
        self.selected = int(label)
        self.layer.selected_label = int(label)
        self._draw_outlines()

    def _mouse_moved(self, layer, event):
        label = label_at(layer, event.position)
        if label != self.hovered:
            self.hovered = label
            self._draw_outlines()

    def _draw_outlines(self):
        """Yellow box round the selected object, white round the one under the cursor."""
        boxes, colours = [], []
        hovered = self.hovered if self.hovered != self.selected else 0
        for label, colour in ((self.selected, SELECTED_COLOUR), (hovered, HOVERED_COLOUR)):
            row = feature_row(self.layer, label) if label else None
            if row and "bbox_y0" in row:
                margin = 3
                boxes.append(
                    np.array(
                        [
                            [row["bbox_y0"] - margin, row["bbox_x0"] - margin],
                            [row["bbox_y1"] + margin, row["bbox_x1"] + margin],
                        ],
                        float,
                    )
                )
                colours.append(colour)
        name = f"{self.layer.name} selection"
        shapes = self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401
        if shapes is None:
            if not boxes:
                return
            active = self.viewer.layers.selection.active
            shapes = self.viewer.add_shapes(
                name=name,
                ndim=2,
                scale=self.layer.scale,
                translate=self.layer.translate,
            )
            self.viewer.layers.selection.active = active
        shapes.data = []
        if boxes:
            width = max(1.0, 0.03 * float(np.max(boxes[0][1] - boxes[0][0])))
            shapes.add_rectangles(
                boxes, edge_width=width, edge_color=colours, face_color="transparent"
            )

    def focus(self, label: int) -> None:
        """Select an object, centre the camera on it and zoom so it fills part of the canvas."""
        self.select(label)
        row = feature_row(self.layer, label)
        if not row or "bbox_y0" not in row:
            return
        corners = np.array(
            [
                self.layer.data_to_world((row["bbox_y0"], row["bbox_x0"])),
                self.layer.data_to_world((row["bbox_y1"], row["bbox_x1"])),
            ]
        )
        view = camera(self.viewer)
        view.center = tuple(corners.mean(axis=0))
        view.zoom = zoom_to_fit(np.abs(corners[1] - corners[0]), self.viewer.canvas.size)
