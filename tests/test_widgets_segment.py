"""Segment spread widget, driven through a real napari viewer."""

from __future__ import annotations

import numpy as np

from napari_chromosome_sort._widgets.segment import SegmentWidget


def _synthetic_image():
    from napari_chromosome_sort import synthetic

    return synthetic.make_spread(seed=0).image


def _giemsa_image(giemsa_dir):
    from napari_chromosome_sort.io import read_image

    return read_image(giemsa_dir / "images" / "1.png")


def _segment(viewer, qtbot, image, name="spread"):
    viewer.add_image(image, name=name)
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.run()
    qtbot.waitUntil(
        lambda: f"{name} objects" in viewer.layers and not widget.running, timeout=60000
    )
    return widget, viewer.layers[f"{name} objects"]


def _check_result(layer, image):
    assert layer.data.shape == image.shape[:2]
    features = layer.features
    assert {"label", "status", "reason", "area", "bbox_y0", "centroid_x"} <= set(features.columns)
    assert set(np.unique(layer.data)) - {0} == set(features["label"].astype(int))
    assert (features["status"] == "chromosome").sum() >= 5
    # coloured by status: a kept chromosome and a rejected object get different colours
    kept = int(features.loc[features["status"] == "chromosome", "label"].iloc[0])
    assert layer.colormap.map(np.array([kept]))[0][3] > 0


def test_segment_synthetic(make_napari_viewer, qtbot):
    image = _synthetic_image()
    viewer = make_napari_viewer()
    widget, layer = _segment(viewer, qtbot, image)
    _check_result(layer, image)
    assert "objects" in widget.summary.text()
    assert "denoised" not in widget.summary.text()


def test_segment_noisy_image_says_it_was_denoised(make_napari_viewer, qtbot):
    image = _synthetic_image()
    rng = np.random.default_rng(0)
    noisy = np.clip(image + rng.normal(0, 30, image.shape), 0, 255).astype(np.uint8)
    viewer = make_napari_viewer()
    widget, layer = _segment(viewer, qtbot, noisy, name="noisy")
    _check_result(layer, noisy)
    assert layer.metadata["chromosort"]["denoised"]
    assert "denoised" in widget.summary.text()


def test_segment_giemsa(make_napari_viewer, qtbot, giemsa_dir):
    image = _giemsa_image(giemsa_dir)
    viewer = make_napari_viewer()
    widget, layer = _segment(viewer, qtbot, image)
    _check_result(layer, image)


def test_flip_status_and_edit_labels(make_napari_viewer, qtbot):
    image = _synthetic_image()
    viewer = make_napari_viewer()
    widget, layer = _segment(viewer, qtbot, image)
    label = int(layer.features.loc[layer.features["status"] == "chromosome", "label"].iloc[0])
    colour_kept = layer.colormap.map(np.array([label]))[0].copy()
    widget.select(label)
    widget.reject_button.click()
    row = layer.features[layer.features["label"] == label].iloc[0]
    assert row["status"] == "rejected" and "user" in row["reason"]
    assert not np.allclose(layer.colormap.map(np.array([label]))[0], colour_kept)
    widget.set_status(label, "chromosome")
    assert layer.features.loc[layer.features["label"] == label, "status"].iloc[0] == "chromosome"

    # merge two kept objects with the napari label tools' result: features follow
    kept = layer.features.loc[layer.features["status"] == "chromosome", "label"].astype(int)
    a, b = int(kept.iloc[0]), int(kept.iloc[1])
    area_a = float(layer.features.loc[layer.features["label"] == a, "area"].iloc[0])
    data = np.asarray(layer.data).copy()
    data[data == b] = a
    new = int(data.max()) + 1
    data[:3, :3] = new  # a new hand-painted object
    layer.data = data
    widget.sync()
    labels = set(layer.features["label"].astype(int))
    assert b not in labels and new in labels and a in labels
    assert float(layer.features.loc[layer.features["label"] == a, "area"].iloc[0]) > area_a
    assert layer.features.loc[layer.features["label"] == new, "status"].iloc[0] == "chromosome"


def test_live_preview_debounced(make_napari_viewer, qtbot):
    image = _synthetic_image()
    viewer = make_napari_viewer()
    widget, layer = _segment(viewer, qtbot, image)
    before = int(np.max(layer.data))
    widget.live.setChecked(True)
    name = next(n for n, w in widget.param_widgets.items() if n == "min_area_px")
    widget.param_widgets[name].value = 400  # only big objects stay
    qtbot.waitUntil(lambda: int(np.max(layer.data)) != before and not widget.running, timeout=60000)
    assert widget.run_button.isEnabled()


def test_main_parameters_in_view_the_rest_under_advanced(make_napari_viewer):
    from napari_chromosome_sort._widgets.segment import MAIN_PARAMETERS

    widget = SegmentWidget(make_napari_viewer())
    main = {w.label.replace(" ", "_") for w in widget.form}
    advanced = {w.label.replace(" ", "_") for w in widget.advanced_form}
    assert main == set(MAIN_PARAMETERS) and not main & advanced and "min_area_px" in advanced
    widget.param_widgets["pair_chromatids"].value = False  # main form
    widget.param_widgets["min_area_px"].value = 50  # advanced form
    params = widget.params()
    assert params.pair_chromatids is False and params.min_area_px == 50
    assert params.polarity is None  # "auto" still means auto-detect


def test_no_image_is_a_notification(make_napari_viewer, monkeypatch):
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    widget.run()
    assert shown and "image" in shown[0]


def test_keep_reject_keys(make_napari_viewer, qtbot):
    image = _synthetic_image()
    viewer = make_napari_viewer()
    widget, layer = _segment(viewer, qtbot, image)
    label = int(layer.features.loc[layer.features["status"] == "chromosome", "label"].iloc[0])
    widget.select(label)
    viewer.layers.selection.active = layer
    handler = viewer.window._qt_viewer._key_map_handler
    handler.press_key("r")
    handler.release_key("r")
    assert layer.features.loc[layer.features["label"] == label, "status"].iloc[0] == "rejected"
    handler.press_key("k")
    handler.release_key("k")
    assert layer.features.loc[layer.features["label"] == label, "status"].iloc[0] == "chromosome"
