"""Review least sure through the real viewer: predict, correct the least sure call with its
number key, retrain; the calls, the dataset and the readout follow."""

from __future__ import annotations

import numpy as np

from napari_chromosome_sort._widgets.predict import PredictWidget
from napari_chromosome_sort._widgets.predicting.review import BY_CLASS, OVERALL
from napari_chromosome_sort._widgets.readout import ReadoutWidget
from napari_chromosome_sort._widgets.shared.layers import camera

TIMEOUT_MS = 120_000


def _press(viewer, key):
    handler = viewer.window._qt_viewer._key_map_handler  # tests only: a real key press
    handler.press_key(key)
    handler.release_key(key)


def _readout_counts(readout) -> dict[str, int]:
    readout.compute()
    return _shown_counts(readout)


def _shown_counts(readout) -> dict[str, int]:
    """The counts the readout shows now (without computing it again)."""
    summary = readout.summary
    return dict(zip(summary["class"], summary["count"].astype(int), strict=True))


def test_review_least_sure_correct_and_retrain(make_napari_viewer, qtbot, tmp_path, tiny_model):
    from napari_chromosome_sort import synthetic
    from napari_chromosome_sort.files.dataset import CropDataset

    image = synthetic.make_spread(seed=0).image
    viewer = make_napari_viewer()
    viewer.add_image(image, name="spread")
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model_file.value = str(tiny_model)
    widget.run_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    layer = widget.layer
    classes = list(widget.model.classes)
    readout = ReadoutWidget(viewer)
    before = _readout_counts(readout)
    assert sum(before.values()) == len(layer.features)

    # Review least sure: the least confident call first, the view zoomed to it
    review = widget.review
    review.folder.value = str(tmp_path / "dataset")
    review.sample.setText("WT")
    assert review.order.currentText() == BY_CLASS  # the default walk
    review.start_button.click()
    qtbot.waitUntil(lambda: not review.running and review.current > 0, timeout=TIMEOUT_MS)
    table = layer.features
    # called classes in turn: the first calls visited are one of each called class, each the
    # least sure of its class
    walk = review.walk[: table["class"].nunique()]
    called = table.set_index("label")["class"]
    assert sorted(called[walk]) == sorted(table["class"].unique())
    for label in walk:
        same = table[table["class"] == called[label]]
        sure_same = same[[f"p_{c}" for c in classes]].to_numpy(float).max(1)
        assert int(same["label"].iloc[int(np.argmin(sure_same))]) == label
    assert review.current == walk[0]
    review.order.setCurrentText(OVERALL)  # the least sure of all calls first
    sure = table[[f"p_{c}" for c in classes]].to_numpy(float).max(1)
    least = int(table["label"].iloc[int(np.argmin(sure))])
    assert review.current == least
    row = table[table["label"] == least].iloc[0]
    centre = [(row["bbox_y0"] + row["bbox_y1"]) / 2, (row["bbox_x0"] + row["bbox_x1"]) / 2]
    np.testing.assert_allclose(camera(viewer).center[-2:], centre, atol=1.0)
    assert not review.preview.pixmap().isNull()

    # its number key sets its class: saved to the dataset at once, marked corrected
    was = str(row["class"])
    wrong = next(c for c in classes if c != was)
    viewer.layers.selection.active = layer
    _press(viewer, str(classes.index(wrong) + 1))
    manifest = CropDataset(tmp_path / "dataset").manifest()
    assert manifest["class"].tolist() == [wrong]
    assert manifest["source"].item() == "WT/spread" and int(manifest["label"].item()) == least
    features = layer.features
    assert features.loc[features["label"] == least, "class"].item() == wrong
    assert features["corrected"].dtype == bool and features["corrected"].sum() == 1
    assert review.current != least  # moved on to the next least sure
    assert f"{wrong}" in str(viewer.layers["spread class names"].features["class"].tolist())
    # the readout listens to the session: it counts the correction without a click
    corrected = _shown_counts(readout)
    assert corrected[wrong] == before.get(wrong, 0) + 1 and corrected[was] == before[was] - 1

    # 0: the object under review is no chromosome; it leaves the calls and the readout
    rejected = review.current
    _press(viewer, "0")
    assert rejected not in layer.features["label"].astype(int).tolist()
    assert not (layer.data == rejected).any() and review.current != rejected
    assert sum(_readout_counts(readout).values()) == sum(before.values()) - 1
    assert len(CropDataset(tmp_path / "dataset").manifest()) == 1

    # retrain: the calls, the Grad-CAM and the readout follow
    cam_before = viewer.layers["spread Grad-CAM"].data.copy()
    review.retrain_button.click()
    qtbot.waitUntil(lambda: not review.running, timeout=TIMEOUT_MS)
    assert review.session.model.metadata["training"]["n"] == 19  # 18 + the correction
    assert widget.model is review.session.model
    features = layer.features
    assert features.loc[features["label"] == least, "class"].item() == wrong
    assert int(features["corrected"].sum()) == 1
    cam = viewer.layers["spread Grad-CAM"].data
    assert cam.shape == cam_before.shape and not np.array_equal(cam, cam_before)
    after = _shown_counts(readout)  # recomputed when Retrain repainted the calls
    assert sum(after.values()) == sum(before.values()) - 1
    counts = features["class"].value_counts()
    assert after == {c: int(counts.get(c, 0)) for c in after}
    assert after[wrong] >= 1 and after != before
    assert "1 of" in readout.result_label.text() and "corrected by hand" in (
        readout.result_label.text()
    )
    distribution = {
        widget.distribution.item(r, 0).text(): int(widget.distribution.item(r, 1).text())
        for r in range(widget.distribution.rowCount())
    }
    assert distribution == {c: int(counts.get(c, 0)) for c in classes}
