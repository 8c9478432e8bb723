"""Label chromosomes widget: click/keys/buttons -> crops saved at once in a CropDataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_chromosome_sort._widgets.label import LabelWidget, parse_classes
from napari_chromosome_sort._widgets.segment import SegmentWidget
from napari_chromosome_sort.errors import ChromosortError


def _segmented(viewer, qtbot, image, name):
    viewer.add_image(image, name=name)
    segment = SegmentWidget(viewer)
    segment.image_picker.value = viewer.layers[name]
    segment.run()
    qtbot.waitUntil(
        lambda: f"{name} objects" in viewer.layers and not segment.running, timeout=60000
    )
    return viewer.layers[f"{name} objects"]


def _kept(layer):
    features = layer.features
    return features.loc[features["status"] == "chromosome", "label"].astype(int).tolist()


def _manifest(folder):
    return pd.read_csv(folder / "manifest.csv")


def _label_widget(viewer, layer, folder):
    widget = LabelWidget(viewer)
    widget.folder.value = str(folder)
    widget.labels_picker.value = layer
    widget._labels_changed()
    return widget


def test_parse_classes():
    assert parse_classes(" A, B ,C") == ["A", "B", "C"]
    with pytest.raises(ChromosortError):
        parse_classes("A,A")


def test_label_synthetic_keys_buttons_clear(make_napari_viewer, qtbot, tmp_path):
    from napari_chromosome_sort import synthetic

    viewer = make_napari_viewer()
    layer = _segmented(viewer, qtbot, synthetic.make_spread(seed=0).image, "spread")
    folder = tmp_path / "dataset"
    widget = _label_widget(viewer, layer, folder)
    viewer.window.add_dock_widget(widget)
    assert widget.image_picker.value is viewer.layers["spread"]
    kept = _kept(layer)

    # step to the first kept chromosome: crop preview shown
    widget.step(1)
    assert widget.current == kept[0]
    assert widget.preview.pixmap() is not None and not widget.preview.pixmap().isNull()
    assert max(widget.preview.pixmap().width(), widget.preview.pixmap().height()) >= 240

    # number key on the layer assigns (key 2 = class B); saved at once
    viewer.layers.selection.active = layer
    handler = viewer.window._qt_viewer._key_map_handler
    handler.press_key("2")
    handler.release_key("2")
    assert layer.mode == "pan_zoom"  # the number key did not switch the layer's tool
    table = _manifest(folder)
    assert len(table) == 1 and table["class"].iloc[0] == "B"
    assert (folder / table["file"].iloc[0]).is_file()
    assert int(table["label"].iloc[0]) == kept[0]

    # re-assign moves the same crop, no duplicate
    widget.assign("A")
    table = _manifest(folder)
    assert len(table) == 1 and table["class"].iloc[0] == "A"

    # class buttons + select by label
    widget.select(kept[1])
    widget.class_buttons_box.itemAt(2).widget().click()  # C
    widget.select(kept[2])
    widget.assign("C")
    counts = widget.dataset().counts()
    assert counts["A"] == 1 and counts["C"] == 2
    assert "3 labelled" in widget.counts_label.text()

    # class names shown on the spread
    points = viewer.layers["spread objects classes"]
    assert len(points.data) == 3
    assert set(points.features["class"]) == {"A", "C"}
    # beside each chromosome (its box's corner), not on it
    boxes = layer.features.set_index("label").loc[kept[:3], ["bbox_y0", "bbox_x1"]]
    assert {tuple(p) for p in points.data} == {tuple(b) for b in boxes.to_numpy(float)}

    # 0 clears: the crop leaves the dataset
    widget.select(kept[2])
    widget.assign(None)
    assert len(_manifest(folder)) == 2


def test_label_giemsa_accumulates_spreads(make_napari_viewer, qtbot, tmp_path, giemsa_dir):
    from napari_chromosome_sort.files.io import read_image

    viewer = make_napari_viewer()
    folder = tmp_path / "dataset"
    for i, stem in enumerate(("1", "2")):
        image = read_image(giemsa_dir / "images" / f"{stem}.png")
        layer = _segmented(viewer, qtbot, image, f"spread {stem}")
        widget = _label_widget(viewer, layer, folder)
        for label, cls in zip(_kept(layer)[:3], ("A", "B", "C"), strict=True):
            widget.select(label)
            widget.assign(cls)
        assert len(_manifest(folder)) == 3 * (i + 1)
        crop = np.asarray(widget._crop(_kept(layer)[0]).pixels)
        assert crop.ndim == 3 and crop.shape[2] == 3
    assert _manifest(folder)["source"].nunique() == 2


def test_edited_label_is_cropped(make_napari_viewer, qtbot, tmp_path):
    from napari_chromosome_sort import synthetic

    viewer = make_napari_viewer()
    layer = _segmented(viewer, qtbot, synthetic.make_spread(seed=1).image, "spread")
    widget = _label_widget(viewer, layer, tmp_path / "ds")
    data = np.asarray(layer.data).copy()
    kept = _kept(layer)
    new = int(data.max()) + 5
    data[data == kept[0]] = new  # user re-painted an object with a new label
    layer.data = data
    widget.select(new)
    widget.assign("A")
    table = _manifest(tmp_path / "ds")
    assert int(table["label"].iloc[0]) == new
    assert new in layer.features["label"].astype(int).tolist()


def test_editing_classes_rebuilds_buttons(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = LabelWidget(viewer)
    widget.classes_edit.setText("x, y")
    widget._classes_changed()
    texts = [
        widget.class_buttons_box.itemAt(i).widget().text()
        for i in range(widget.class_buttons_box.count())
    ]
    assert texts == ["1: x", "2: y"]
    assert widget.classes == ["x", "y"]


def _press(viewer, key):
    handler = viewer.window._qt_viewer._key_map_handler
    handler.press_key(key)
    handler.release_key(key)


def test_undo_class_assignments_several_steps(make_napari_viewer, qtbot, tmp_path):
    from napari_chromosome_sort import synthetic

    viewer = make_napari_viewer()
    layer = _segmented(viewer, qtbot, synthetic.make_spread(seed=0).image, "spread")
    folder = tmp_path / "dataset"
    widget = _label_widget(viewer, layer, folder)
    a, b = _kept(layer)[:2]
    viewer.layers.selection.active = layer
    widget.select(a)
    _press(viewer, "1")  # a: A
    _press(viewer, "3")  # a: C
    widget.select(b)
    _press(viewer, "2")  # b: B
    assert sorted(_manifest(folder)["class"]) == ["B", "C"]

    _press(viewer, "Control-Z")  # b's label taken back: its crop is deleted
    table = _manifest(folder)
    assert list(table["class"]) == ["C"] and int(table["label"].iloc[0]) == a
    widget.undo_button.click()  # a back to A: the crop moves back
    table = _manifest(folder)
    assert list(table["class"]) == ["A"] and (folder / table["file"].iloc[0]).is_file()
    _press(viewer, "Control-Z")  # a unlabelled
    assert len(_manifest(folder)) == 0
    assert set(layer.features["class"].astype(str)) == {""}
    assert "0 labelled" in widget.counts_label.text()


def test_next_zooms_and_number_keys_in_status_bar_hint(make_napari_viewer, qtbot, tmp_path):
    from napari_chromosome_sort import synthetic

    viewer = make_napari_viewer()
    layer = _segmented(viewer, qtbot, synthetic.make_spread(seed=0).image, "spread")
    widget = _label_widget(viewer, layer, tmp_path / "ds")
    view = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    zoom = view.zoom
    widget.next_button.click()
    row = layer.features[layer.features["label"] == _kept(layer)[0]].iloc[0]
    centre = ((row["bbox_y0"] + row["bbox_y1"]) / 2, (row["bbox_x0"] + row["bbox_x1"]) / 2)
    np.testing.assert_allclose(view.center[-2:], centre, atol=1)
    assert view.zoom > 2 * zoom
    assert len(viewer.layers["spread objects selection"].data) == 1

    assert "1 A · 2 B · 3 C · 0 clears" in widget.keys_help.text()
    viewer.layers.selection.active = layer
    assert "use <0–9> for class: 1 A · 2 B · 3 C · 0 clears" in viewer.help
    assert "use <2>" not in viewer.help and "use <1>" not in viewer.help  # napari's tool keys
    layer.mode = "paint"
    assert "use <6>" not in layer.help and "use <Ctrl+Z> for undo" in layer.help
