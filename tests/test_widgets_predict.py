"""Predict and explain widget: class Labels layer, Grad-CAM layer, table, CSV, object details."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from napari_chromosome_sort._widgets.predict import PredictWidget
from napari_chromosome_sort._widgets.shared.layers import hex_to_rgba

TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def ikemoto_model(tmp_path_factory, ikemoto_model_file):
    from napari_chromosome_sort.classification.models.model_io import import_state_dict, save_model

    model = import_state_dict(ikemoto_model_file, classes=["A", "B", "C"])
    return save_model(model, tmp_path_factory.mktemp("ikemoto") / "ikemoto.safetensors")


def _predict(viewer, qtbot, model_path, image, name="spread", objects=None):
    if name not in viewer.layers:
        viewer.add_image(image, name=name)
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model_file.value = str(model_path)
    widget.image_picker.value = viewer.layers[name]
    if objects is not None:
        widget.objects_picker.value = objects
    widget.run_button.click()
    assert not widget.run_button.isEnabled()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    return widget


def _check(viewer, widget, image, name="spread"):
    layer = viewer.layers[f"{name} predicted classes"]
    features = layer.features
    classes = list(widget.model.classes)
    assert {"label", "class", *(f"p_{c}" for c in classes)} <= set(features.columns)
    assert len(features) > 0
    assert set(np.unique(layer.data)) - {0} == set(features["label"].astype(int))
    probabilities = features[[f"p_{c}" for c in classes]].to_numpy(float)
    assert np.allclose(probabilities.sum(1), 1, atol=1e-3)
    # coloured by predicted class
    first = features.iloc[0]
    colour = layer.colormap.map(np.array([int(first["label"])]))[0]
    assert colour[3] > 0
    cam = viewer.layers[f"{name} Grad-CAM"]
    assert cam.data.shape == image.shape[:2]
    assert float(cam.data.max()) > 0
    # each chromosome's own map, on its pixels only: no square crop windows
    assert not np.any(cam.data[np.asarray(layer.data) == 0])
    text = viewer.layers[f"{name} class names"]
    assert len(text.data) == len(features)
    # type distribution table
    counts = [int(widget.distribution.item(r, 1).text()) for r in range(len(classes))]
    assert sum(counts) == len(features)
    return layer


def test_predict_synthetic(make_napari_viewer, qtbot, tmp_path, tiny_model, monkeypatch):
    from napari_chromosome_sort import synthetic

    image = synthetic.make_spread(seed=0).image
    viewer = make_napari_viewer()
    widget = _predict(viewer, qtbot, tiny_model, image)
    layer = _check(viewer, widget, image)

    # the legend names every class in the colour its chromosomes have on the spread
    legend = re.findall(r'color:(#[0-9a-fA-F]{6})">■</span> (\w+)', widget.legend.text())
    colours = {cls: colour for colour, cls in legend}
    assert set(colours) == set(widget.model.classes)
    for label, cls in zip(layer.features["label"], layer.features["class"], strict=True):
        np.testing.assert_allclose(
            layer.get_color(int(label))[:3], hex_to_rgba(colours[cls])[:3], atol=0.01
        )

    # CSV export of the table
    path = widget.export_csv(str(tmp_path / "predictions.csv"))
    table = pd.read_csv(path)
    assert len(table) == len(layer.features) and "class" in table

    # npe2 writer gives the same table from the layer
    from napari_chromosome_sort._writer import write_features_csv

    data, meta, _ = layer.as_layer_data_tuple()
    written = write_features_csv(str(tmp_path / "via_writer.csv"), data, meta)
    assert len(pd.read_csv(written[0])) == len(table)

    # clicking an object shows its crop, probabilities and Grad-CAM
    label = int(layer.features["label"].iloc[0])

    def no_network(*_args, **_kwargs):
        raise AssertionError("a click ran Grad-CAM on the GUI thread")

    for name in ("gradcam", "gradcams", "spread_gradcam"):  # the map comes with the call
        monkeypatch.setattr(f"napari_chromosome_sort.classification.gradcam.{name}", no_network)
    widget.show_object(label)
    assert f"Object {label}" in widget.detail.text() and "%" in widget.detail.text()
    assert widget.crop_view.pixmap() is not None and not widget.crop_view.pixmap().isNull()
    assert widget.cam_view.pixmap() is not None and not widget.cam_view.pixmap().isNull()


def test_predict_uses_reviewed_objects(make_napari_viewer, qtbot, tiny_model, segment_in_viewer):
    """A rejected object is not classified: predict follows the reviewed Labels layer."""
    from napari_chromosome_sort import synthetic

    image = synthetic.make_spread(seed=0).image
    viewer = make_napari_viewer()
    viewer.add_image(image, name="spread")
    segment, objects = segment_in_viewer(viewer)
    kept = objects.features.loc[objects.features["status"] == "chromosome", "label"].astype(int)
    rejected = int(kept.iloc[0])
    segment.set_status(rejected, "rejected")
    widget = _predict(viewer, qtbot, tiny_model, image, objects=objects)
    layer = _check(viewer, widget, image)
    assert rejected not in set(layer.features["label"].astype(int))
    assert len(layer.features) == len(kept) - 1


def test_predict_giemsa(make_napari_viewer, qtbot, giemsa_dir, ikemoto_model):
    from napari_chromosome_sort.files.io import read_image

    image = read_image(giemsa_dir / "images" / "1.png")
    viewer = make_napari_viewer()
    widget = _predict(viewer, qtbot, ikemoto_model, image)
    _check(viewer, widget, image)


def test_a_dapi_like_spread_warns_that_it_is_unlike_the_bundled_models_crops(
    make_napari_viewer, qtbot, monkeypatch
):
    """The bundled model learnt from Giemsa crops (dark on light): a bright-on-dark spread
    gets a warning; a Giemsa-like one does not."""
    from napari_chromosome_sort import synthetic

    warned = []
    monkeypatch.setattr("napari_chromosome_sort._widgets.predict.show_warning", warned.append)
    viewer = make_napari_viewer()
    for modality in ("giemsa", "dapi"):
        spread = synthetic.make_spread(
            seed=3, modality=modality, shape=(256, 256), n_chromosomes=10, n_nuclei=0
        )
        viewer.add_image(spread.image, name=modality)
        widget = PredictWidget(viewer)
        assert widget.model_choice.currentText().startswith("bundled wild-type model")
        widget.image_picker.value = viewer.layers[modality]
        widget.run_button.click()
        qtbot.waitUntil(lambda widget=widget: not widget.running, timeout=TIMEOUT_MS)
        assert f"{modality} predicted classes" in viewer.layers
        if modality == "giemsa":
            assert warned == [] and "Warning" not in widget.status.text()
    assert len(warned) == 1 and "bright chromosomes on a dark background" in warned[0]
    assert "Warning" in widget.status.text()


def test_missing_model_is_a_notification(make_napari_viewer, monkeypatch, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.uint8), name="spread")
    widget = PredictWidget(viewer)
    widget.model_file.value = str(tmp_path / "missing.safetensors")
    shown = []
    choice = "napari_chromosome_sort._widgets.predicting.model_choice"
    monkeypatch.setattr(f"{choice}.show_error", shown.append)
    widget.run()
    assert shown and "does not exist" in shown[0]
    assert not widget.running


def _folder_widget(viewer, tmp_path, model, n_spreads: int) -> PredictWidget:
    """A Predict widget set to run ``model`` over a folder of small synthetic spreads."""
    from PIL import Image

    from napari_chromosome_sort import synthetic

    folder = tmp_path / "spreads" / "sample1"
    folder.mkdir(parents=True)
    for seed in range(n_spreads):
        Image.fromarray(
            synthetic.make_spread(seed=seed, shape=(256, 256), n_chromosomes=8, n_nuclei=0).image
        ).save(folder / f"s{seed}.png")
    widget = PredictWidget(viewer)
    widget.model_file.value = str(model)
    widget.batch.folder.value = str(tmp_path / "spreads")
    widget.batch.out_folder.value = str(tmp_path / "out")
    return widget


def test_predict_folder(make_napari_viewer, qtbot, tmp_path, tiny_model):
    """A folder of spreads goes through the core batch run; tables land in the output folder."""
    widget = _folder_widget(make_napari_viewer(), tmp_path, tiny_model, 2)
    widget.batch.button.click()
    assert not widget.batch.button.isEnabled()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert (tmp_path / "out" / "objects.csv").is_file()
    assert "out" in widget.status.text()
    # the results appear in the viewer: the first spread with its calls and Grad-CAM, the
    # others listed to pick from
    viewer = widget.viewer
    objects = pd.read_csv(tmp_path / "out" / "objects.csv")
    spreads = widget.batch.spreads
    assert spreads.choices == (("sample1", "s0"), ("sample1", "s1"))
    assert [spreads.native.itemText(i) for i in range(2)] == ["sample1 / s0", "sample1 / s1"]
    first = objects[(objects["spread"] == "s0") & objects["class"].notna()]
    calls = viewer.layers["sample1 s0 predicted classes"]
    assert viewer.layers["sample1 s0"].data.shape[:2] == calls.data.shape
    assert set(np.unique(calls.data)) - {0} == set(first["label"].astype(int))
    assert calls.features["class"].tolist() == first["class"].tolist()
    assert float(viewer.layers["sample1 s0 Grad-CAM"].data.max()) > 0
    counts = [int(widget.distribution.item(r, 1).text()) for r in range(3)]
    assert sum(counts) == len(first)
    # another spread of the run, on request
    widget.batch.show_spread(("sample1", "s1"))
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    second = objects[(objects["spread"] == "s1") & objects["class"].notna()]
    calls = viewer.layers["sample1 s1 predicted classes"]
    assert set(np.unique(calls.data)) - {0} == set(second["label"].astype(int))


def test_reviewed_objects_layer_is_chosen(make_napari_viewer, segment_in_viewer):
    """Predict offers the spread's objects layer from Segment spread, not re-segmenting."""
    from napari_chromosome_sort import synthetic

    viewer = make_napari_viewer()
    viewer.add_image(synthetic.make_spread(seed=0).image, name="spread")
    widget = PredictWidget(viewer)
    assert widget.objects_picker.value is None  # nothing reviewed yet: segment automatically
    segment_in_viewer(viewer)
    assert widget.objects_picker.value is viewer.layers["spread objects"]
    assert PredictWidget(viewer).objects_picker.value is viewer.layers["spread objects"]
    viewer.add_image(synthetic.make_spread(seed=1).image, name="other")
    widget.image_picker.value = viewer.layers["other"]
    assert widget.objects_picker.value is None  # the other spread has no reviewed objects


def test_bundled_model_is_offered_first_and_calls_the_sample(make_napari_viewer, qtbot):
    from napari_chromosome_sort._sample_data import make_giemsa_spread

    ((image, meta, _),) = make_giemsa_spread()
    viewer = make_napari_viewer()
    viewer.add_image(image, **meta)
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.model_choice.currentText().startswith("bundled wild-type model")
    messages = []
    widget.image_picker.value = viewer.layers[meta["name"]]
    widget.run_button.click()
    widget.worker.yielded.connect(lambda report: messages.append(report.message))
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    _check(viewer, widget, image, name=meta["name"])
    assert list(widget.model.classes) == ["A", "B", "C"]
    # progress per step and per chunk of Grad-CAM, ending full
    assert any(m.startswith("Explaining: Grad-CAM") for m in messages)
    assert widget.progress.value() == widget.progress.maximum()


def test_model_trained_in_the_session_is_offered(make_napari_viewer, tiny_model):
    from napari_chromosome_sort._widgets.session import session_of

    viewer = make_napari_viewer()
    widget = PredictWidget(viewer)
    session_of(viewer).add_model(tiny_model)
    assert widget.model_choice.currentText() == f"trained here: {tiny_model.name}"
    assert widget._model_path() == str(tiny_model)
    # a model file chosen afterwards takes over
    widget.model_file.value = str(tiny_model)
    assert widget.model_choice.currentText() == "model file below"


def test_cancel_shows_and_writes_nothing(make_napari_viewer, qtbot, tiny_model):
    from napari_chromosome_sort import synthetic

    viewer = make_napari_viewer()
    viewer.add_image(synthetic.make_spread(seed=0).image, name="spread")
    widget = PredictWidget(viewer)
    widget.model_file.value = str(tiny_model)
    widget.image_picker.value = viewer.layers["spread"]
    widget.run_button.click()
    assert widget.cancel_button.isEnabled()
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert "spread predicted classes" not in viewer.layers
    assert "Cancelled" in widget.status.text()
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_import_published_model_from_the_widget(
    make_napari_viewer, monkeypatch, ikemoto_model_file
):
    viewer = make_napari_viewer()
    widget = PredictWidget(viewer)
    shown = []
    monkeypatch.setattr("napari_chromosome_sort._widgets.shared.workers.show_error", shown.append)
    # four class names for a three-output model: a notification naming the problem, nothing added
    assert widget.import_published(ikemoto_model_file, "A,B,C,D") is None
    assert shown and "3 outputs" in shown[0]
    path = widget.import_published(ikemoto_model_file, "A, B, C")
    assert widget.model_choice.currentText() == f"imported: {ikemoto_model_file.stem}.safetensors"
    assert widget._model_path() == path
    from napari_chromosome_sort.classification.models.model_io import read_metadata

    assert read_metadata(path)["classes"] == ["A", "B", "C"]


def test_cancelled_folder_run_releases_its_output_folder(
    make_napari_viewer, qtbot, tmp_path, tiny_model
):
    """Cancel, then Predict folder again on the same output: it runs (the lock was released)."""
    widget = _folder_widget(make_napari_viewer(), tmp_path, tiny_model, 3)
    reports = []
    widget.batch.button.click()
    widget.worker.yielded.connect(reports.append)
    qtbot.waitUntil(lambda: bool(reports), timeout=TIMEOUT_MS)  # the run holds the folder now
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert "Cancelled" in widget.status.text()
    widget.batch.button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert (tmp_path / "out" / "objects.csv").is_file()
    assert "Folder done" in widget.status.text()


def _delta_e_to_classes(colours_rgb: np.ndarray) -> np.ndarray:
    """CIEDE2000 distance of each colour (n, 3 floats) to the nearest class colour."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    from napari_chromosome_sort.display.colours import CLASS_PALETTE

    classes = rgb2lab(np.array([hex_to_rgba(c)[:3] for c in CLASS_PALETTE])[None])[0]
    lab = rgb2lab(np.asarray(colours_rgb, float)[None])[0]
    return np.array([[deltaE_ciede2000(c, k) for k in classes] for c in lab]).min(1)


def test_gradcam_reads_beside_the_class_outlines(make_napari_viewer, qtbot, tiny_model):
    """Grad-CAM in a palette no class colour shares, masked to the chromosomes, class outlines
    by default, one key between the map and the class colours, ONE colour bar for two spreads,
    class names beside the objects."""
    from napari_chromosome_sort import synthetic

    viewer = make_napari_viewer()
    first = synthetic.make_spread(seed=0).image
    widget = _predict(viewer, qtbot, tiny_model, first)
    layer = _check(viewer, widget, first)
    cam = viewer.layers["spread Grad-CAM"]
    # the palette: every visible colour of the map far from every class colour
    drawn = cam.colormap.map(np.linspace(0.25, 1.0, 16))
    assert np.all(drawn[:, 3] > 0) and cam.colormap.map(np.array([0.0]))[0, 3] == 0
    assert _delta_e_to_classes(drawn[:, :3]).min() >= 15
    # the same palette in the click panel and the command line's PNGs
    from napari_chromosome_sort.display.cam_display import cam_rgb

    np.testing.assert_allclose(cam_rgb(np.linspace(0.25, 1, 16)), drawn[:, :3], atol=0.03)
    # class outlines, not fills, while the map shows; G switches to the class colours and back
    assert layer.contour > 0 and cam.visible
    viewer.layers.selection.active = layer
    _press(viewer, "g")
    assert layer.contour == 0 and not cam.visible
    _press(viewer, "g")
    assert layer.contour > 0 and cam.visible
    # class names beside the chromosome (its box's corner), not on it
    names = viewer.layers["spread class names"].data
    features = layer.features
    np.testing.assert_allclose(names, features[["bbox_y0", "bbox_x1"]].to_numpy(float))
    # a second spread: still one colour bar in the viewer
    second = synthetic.make_spread(seed=1).image
    _predict(viewer, qtbot, tiny_model, second, name="other")
    maps = [viewer.layers[f"{n} Grad-CAM"] for n in ("spread", "other")]
    assert [m.colorbar.visible for m in maps] == [False, True]


def _press(viewer, key):
    handler = viewer.window._qt_viewer._key_map_handler  # tests only: a real key press
    handler.press_key(key)
    handler.release_key(key)


def test_cli_gradcam_png_has_the_palette_and_a_colour_bar(tmp_path, tiny_model):
    """``chromosort predict --spreads --gradcam``: the PNG draws the map on the chromosomes
    only, in the viewer's palette, with a colour bar beside the spread."""
    from PIL import Image

    from napari_chromosome_sort import synthetic
    from napari_chromosome_sort.cli import main

    spread = synthetic.make_spread(seed=0)
    Image.fromarray(spread.image).save(tmp_path / "s1.png")
    out = tmp_path / "cams"
    main(
        [
            "predict",
            str(tiny_model),
            str(tmp_path / "s1.png"),
            "--spreads",
            "--gradcam",
            str(out),
            "--out",
            str(tmp_path / "calls.csv"),
        ]
    )
    picture = np.asarray(Image.open(out / "s1_gradcam.png").convert("RGB"))
    height, width = spread.image.shape[:2]
    assert picture.shape[0] == height and picture.shape[1] > width  # the colour bar at the side
    bar = picture[:, width:].reshape(-1, 3)
    coloured = bar[np.ptp(bar.astype(int), axis=1) > 40]  # the bar's blues (not text or white)
    assert len(coloured) > 100
    assert _delta_e_to_classes(coloured / 255.0).min() >= 12
    # off the chromosomes the spread is left as it was (no square windows)
    calls = pd.read_csv(tmp_path / "calls.csv")
    assert len(calls) > 0
    image = np.asarray(Image.open(tmp_path / "s1.png").convert("RGB"))
    # far from every chromosome (grown truth masks), the spread is left as it was
    from scipy import ndimage as ndi

    background = ~ndi.binary_dilation(np.asarray(spread.truth_labels) > 0, iterations=15)
    assert np.all(picture[:, :width][background] == image[background])
