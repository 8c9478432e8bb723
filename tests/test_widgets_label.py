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
    segment.image_picker.set_layer(viewer.layers[name])
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
    widget.labels_picker.set_layer(layer)
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
    assert widget.image_picker.layer() is viewer.layers["spread"]
    kept = _kept(layer)

    # step to the first kept chromosome: crop preview shown
    widget.step(1)
    assert widget.current == kept[0]
    assert widget.preview.pixmap() is not None and not widget.preview.pixmap().isNull()

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

    # 0 clears: the crop leaves the dataset
    widget.select(kept[2])
    widget.assign(None)
    assert len(_manifest(folder)) == 2


def test_label_giemsa_accumulates_spreads(make_napari_viewer, qtbot, tmp_path, giemsa_dir):
    from napari_chromosome_sort.io import read_image

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
