"""Qt-free pieces of the review widgets: undo history, table after an undone edit, shades."""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_chromosome_sort._widgets.shared.objects import help_with_keys, zoom_to_fit
from napari_chromosome_sort.segmentation.edits import (
    EditHistory,
    measure_labels,
    neighbour_shades,
    reconcile_objects,
    restore_objects,
)


def _two_objects():
    labels = np.zeros((20, 20), np.int32)
    labels[2:8, 2:8] = 1
    labels[2:8, 8:14] = 2  # touching 1
    table = measure_labels(labels)
    table["status"] = ["chromosome", "rejected"]
    table["reason"] = ["", "rejected by user"]
    return labels, table


def test_restore_objects_brings_back_rows_of_an_undone_merge():
    labels, before = _two_objects()
    merged = labels.copy()
    merged[merged == 2] = 1
    after = reconcile_objects(merged, before)
    assert list(after["label"]) == [1]
    after.loc[after["label"] == 1, "status"] = "rejected"  # a change after the merge
    restored = restore_objects(labels, after, before)
    assert list(restored["label"]) == [1, 2]
    assert list(restored["status"]) == ["chromosome", "rejected"]  # as before the merge
    assert list(restored["reason"]) == ["", "rejected by user"]
    assert list(restored["area"]) == [36, 36]


def test_restore_objects_keeps_changes_to_untouched_objects():
    labels, before = _two_objects()
    edited = labels.copy()
    edited[10:12, 10:12] = 3  # a new object, painted
    current = reconcile_objects(edited, before)
    current.loc[current["label"] == 2, "status"] = "chromosome"  # set after the paint
    restored = restore_objects(labels, current, before)
    assert list(restored["label"]) == [1, 2]
    assert restored.loc[restored["label"] == 2, "status"].iloc[0] == "chromosome"


def test_edit_history_order_and_label_edits():
    history = EditHistory()
    undone = []
    history.add_change("reject 1", lambda: undone.append(1))
    history.add_label_edit(pd.DataFrame({"label": [1]}))
    history.add_change("keep 2", lambda: undone.append(2))
    assert history.pop_label_edit().table_before["label"].tolist() == [1]
    assert history.pop_label_edit() is None
    history.pop().undo()
    history.pop().undo()
    assert undone == [2, 1] and history.pop() is None
    history.add_label_edit(pd.DataFrame({"label": [1]}))
    history.add_change("x", lambda: None)
    history.forget_label_edits()
    assert [s.description for s in history.steps] == ["x"]


def test_neighbour_shades_differ_for_touching_objects():
    labels, _ = _two_objects()
    labels[15:18, 15:18] = 3
    shades = neighbour_shades(labels, [1, 2, 3], n_shades=3)
    assert shades[1] != shades[2] and set(shades) == {1, 2, 3}


def test_help_with_keys_replaces_taken_keys_and_is_stable():
    napari_help = "use <1> for activate the label eraser, use <2> for paint, use <M> for new label"
    text = help_with_keys(napari_help, {"1", "2"}, {"0–9": "class: 1 A · 2 B", "Ctrl+Z": "undo"})
    assert text == "use <0–9> for class: 1 A · 2 B, use <Ctrl+Z> for undo, use <M> for new label"
    assert help_with_keys(text, {"1", "2"}, {"0–9": "class: 1 A · 2 B", "Ctrl+Z": "undo"}) == text


def test_zoom_to_fit():
    assert zoom_to_fit((10, 20), (600, 800), fill=0.5) == 0.5 * min(60, 40)
