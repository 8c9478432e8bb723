"""Segment spread widget, driven through a real napari viewer."""

from __future__ import annotations

import numpy as np

from napari_chromosome_sort._widgets.segment import SegmentWidget


def _synthetic_image():
    from napari_chromosome_sort import synthetic

    return synthetic.make_spread(seed=0).image


def _giemsa_image(giemsa_dir):
    from napari_chromosome_sort.files.io import read_image

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
    monkeypatch.setattr("napari_chromosome_sort._widgets.segment.show_error", shown.append)
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


def _status(layer, label):
    return layer.features.loc[layer.features["label"].astype(int) == label, "status"].iloc[0]


def _press(viewer, key):
    handler = viewer.window._qt_viewer._key_map_handler
    handler.press_key(key)
    handler.release_key(key)


def test_undo_keep_reject_several_steps(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget, layer = _segment(viewer, qtbot, _synthetic_image())
    a, b = (
        int(v) for v in layer.features.loc[layer.features["status"] == "chromosome", "label"][:2]
    )
    viewer.layers.selection.active = layer
    widget.select(a)
    _press(viewer, "r")
    widget.select(b)
    _press(viewer, "r")
    _press(viewer, "k")
    assert (_status(layer, a), _status(layer, b)) == ("rejected", "chromosome")
    reason_b = layer.features.loc[layer.features["label"] == b, "reason"].iloc[0]
    _press(viewer, "Control-Z")  # the keep of b
    assert _status(layer, b) == "rejected"
    widget.undo_button.click()  # the reject of b
    assert _status(layer, b) == "chromosome" and reason_b != "rejected by user"
    _press(viewer, "Control-Z")  # the reject of a
    assert _status(layer, a) == "chromosome"
    assert layer.colormap.map(np.array([a]))[0][1] > 0.5  # green again


def _two_touching_kept(layer):
    """Two kept objects and a pixel of each (to fill one over the other)."""
    data = np.asarray(layer.data)
    kept = layer.features.loc[layer.features["status"] == "chromosome", "label"].astype(int)
    a, b = int(kept.iloc[0]), int(kept.iloc[1])
    return a, b, tuple(np.argwhere(data == a)[0]), tuple(np.argwhere(data == b)[0])


def test_table_follows_napari_undo_of_a_paint_edit(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget, layer = _segment(viewer, qtbot, _synthetic_image())
    a, b, _, pixel_b = _two_touching_kept(layer)
    widget.set_status(b, "rejected")
    table = layer.features.copy()
    colour_a = layer.colormap.map(np.array([a]))[0].copy()
    layer.fill(pixel_b, a)  # napari's fill bucket: b merged into a
    widget.sync()
    assert b not in set(layer.features["label"].astype(int))
    assert not np.allclose(layer.colormap.map(np.array([a]))[0], colour_a)  # edit shows
    layer.undo()  # napari's own undo (as its Ctrl+Z)
    assert set(layer.features["label"].astype(int)) == set(np.unique(layer.data)) - {0}
    assert _status(layer, b) == "rejected"
    for column in ("status", "reason", "area"):
        assert list(layer.features[column]) == list(table[column])
    np.testing.assert_allclose(layer.colormap.map(np.array([a]))[0], colour_a)
    layer.redo()  # napari's redo: the merge and its table come back
    assert b not in set(layer.features["label"].astype(int))
    layer.undo()
    assert _status(layer, b) == "rejected"

    # Ctrl+Z on the layer undoes the user's steps in order: paint, then the reject
    layer.fill(pixel_b, a)
    widget.sync()
    viewer.layers.selection.active = layer
    _press(viewer, "Control-Z")
    assert _status(layer, b) == "rejected"
    _press(viewer, "Control-Z")
    assert _status(layer, b) == "chromosome"


def test_split_halves_get_different_shades(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget, layer = _segment(viewer, qtbot, _synthetic_image())
    a = int(layer.features.loc[layer.features["status"] == "chromosome", "label"].iloc[0])
    data = np.asarray(layer.data)
    ys, xs = np.nonzero(data == a)
    new = int(data.max()) + 1
    top = ys < np.median(ys)
    layer.data_setitem((ys[top], xs[top]), new)  # paint the top half with a new label
    widget.sync()
    colours = layer.colormap.map(np.array([a, new]))
    assert not np.allclose(colours[0], colours[1])
    assert _status(layer, new) == "chromosome"


def test_next_zooms_to_the_object_and_outlines_it(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget, layer = _segment(viewer, qtbot, _synthetic_image())
    view = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    zoom = view.zoom
    widget.step_filter.setCurrentText("every object")
    widget.next_button.click()
    label = widget._selected
    row = layer.features[layer.features["label"] == label].iloc[0]
    assert row["status"] == "cluster" or "cluster" not in set(layer.features["status"])
    centre = ((row["bbox_y0"] + row["bbox_y1"]) / 2, (row["bbox_x0"] + row["bbox_x1"]) / 2)
    np.testing.assert_allclose(view.center[-2:], centre, atol=1)
    assert view.zoom > 2 * zoom
    box = viewer.layers["spread objects selection"]
    assert len(box.data) == 1
    np.testing.assert_allclose(box.data[0].min(axis=0), (row["bbox_y0"] - 3, row["bbox_x0"] - 3))
    widget.next_button.click()
    widget.prev_button.click()
    assert widget._selected == label and layer.selected_label == label


def test_review_shows_the_chromosome_and_steps_through_chromosomes_only(make_napari_viewer, qtbot):
    """Status outlines, not fills; Next after a Reject goes on to the next chromosome (never to
    a nucleus, a border object or debris); another status is a choice of the filter."""
    viewer = make_napari_viewer()
    widget, layer = _segment(viewer, qtbot, _synthetic_image())
    assert layer.contour > 0 and layer.opacity == 1.0  # outlines: the morphology stays visible
    statuses = set(layer.features["status"])
    assert statuses - {"chromosome"}, "the spread must hold other statuses for this test"
    kept = layer.features.loc[layer.features["status"] == "chromosome", "label"].astype(int)
    assert widget.step_filter.currentText() == "chromosomes"
    seen = []
    for _ in range(len(kept) + 1):
        widget.next_button.click()
        seen.append(widget._selected)
    assert set(seen) == set(kept)  # every chromosome, nothing else, then round again
    widget.reject_button.click()
    rejected = widget._selected
    widget.next_button.click()
    after = widget._selected
    assert after != rejected and after in set(kept)
    order = [label for label in widget.review_order(layer, by_status=False) if label in seen]
    assert order.index(after) == (order.index(rejected) + 1) % len(order)  # the next one on
    widget.step_filter.setCurrentText("rejected")
    widget.next_button.click()
    assert widget._selected == rejected


def test_keys_listed_in_widget_and_status_bar_hint(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget, layer = _segment(viewer, qtbot, _synthetic_image())
    assert "K keep" in widget.keys_help.text() and "R reject" in widget.keys_help.text()
    viewer.layers.selection.active = layer
    assert "use <K> for keep" in viewer.help and "use <Ctrl+Z> for undo" in viewer.help
    layer.mode = "paint"  # napari rewrites the hint on a mode change: ours stays
    assert "use <R> for reject" in layer.help


def test_object_under_the_cursor_is_outlined(make_napari_viewer, qtbot):
    from types import SimpleNamespace

    from napari_chromosome_sort._widgets.shared.objects import review_of

    viewer = make_napari_viewer()
    widget, layer = _segment(viewer, qtbot, _synthetic_image())
    kept = layer.features.loc[layer.features["status"] == "chromosome", "label"].astype(int)
    a, b = int(kept.iloc[0]), int(kept.iloc[1])
    widget.select(a)
    pixel_b = np.argwhere(np.asarray(layer.data) == b)[0].astype(float)
    review_of(viewer, layer)._mouse_moved(layer, SimpleNamespace(position=tuple(pixel_b)))
    box = viewer.layers["spread objects selection"]
    assert len(box.data) == 2  # selected (yellow) and hovered (white)
    assert not np.allclose(box.edge_color[0], box.edge_color[1])


def test_new_segmentation_clears_undo(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget, layer = _segment(viewer, qtbot, _synthetic_image())
    small = layer.features.sort_values("area").iloc[0]
    label = int(small["label"])
    layer.fill(tuple(np.argwhere(np.asarray(layer.data) == label)[0]), 0)  # erased by hand
    widget.set_status(int(layer.features["label"].iloc[-1]), "rejected")
    widget.param_widgets["min_area_px"].value = int(small["area"]) + 1  # drops that object
    widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    fresh = np.asarray(layer.data).copy()
    viewer.layers.selection.active = layer
    _press(viewer, "Control-Z")  # nothing of the old segmentation comes back
    np.testing.assert_array_equal(layer.data, fresh)
    assert (layer.features["reason"] != "rejected by user").all()


def test_reasons_quote_the_numbers_the_table_shows(make_napari_viewer, qtbot, giemsa_dir):
    """On a real spread, every size a reason quotes is the table's: the object's area ("too
    small: 121 px" for a 121 px object) and its multiple of the median kept chromosome."""
    import re

    from napari_chromosome_sort.files.io import read_image

    viewer = make_napari_viewer()
    widget, layer = _segment(viewer, qtbot, read_image(giemsa_dir / "images" / "5.png"))
    features = layer.features
    median = float(features.loc[features["status"] == "chromosome", "area"].median())
    quoted = 0
    for _, row in features.iterrows():
        area = re.match(r"(?:too small|single object)[:,] (\d+) px", row["reason"])
        if area:
            assert int(area[1]) == row["area"], row["reason"]
            quoted += 1
        ratio = re.search(r"([\d.]+)x the median chromosome \((\d+) px\)", row["reason"])
        if ratio:
            assert int(ratio[2]) == round(median), row["reason"]
            assert abs(float(ratio[1]) - row["area"] / median) <= 0.051, row["reason"]
    assert quoted > 10
    assert features["reason"].str.startswith("too small").any()  # debris is on this spread
    # the review panel shows the same reason beside the same area
    label = int(features.loc[features["reason"].str.startswith("too small"), "label"].iloc[0])
    widget.select(label, layer)
    row = features[features["label"] == label].iloc[0]
    assert row["reason"] in widget.selection_label.text()
    assert f"area {row['area']:.0f} px" in widget.selection_label.text()


def test_every_status_has_a_colour_and_a_review_place():
    from napari_chromosome_sort._widgets.shared.layers import STATUS_COLOURS
    from napari_chromosome_sort._widgets.shared.objects import REVIEW_ORDER
    from napari_chromosome_sort.segmentation import REVIEW_STATUSES

    assert set(REVIEW_STATUSES) == set(STATUS_COLOURS) == set(REVIEW_ORDER)
    assert len(set(STATUS_COLOURS.values())) == len(STATUS_COLOURS)
