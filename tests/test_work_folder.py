"""Saving the work on a spread (image, reviewed objects, predictions) and opening it again."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.work import read_work, save_work

PLUGIN = "napari-chromosome-sort"


def test_work_saved_from_napari_opens_again_with_statuses_and_calls(
    make_napari_viewer, qtbot, tmp_path, segment_in_viewer
):
    from napari_chromosome_sort._widgets.predict import PredictWidget
    from napari_chromosome_sort._widgets.segment import SegmentWidget
    from napari_chromosome_sort.synthetic import make_spread

    viewer = make_napari_viewer()
    viewer.add_image(make_spread(seed=0).image, name="spread")
    segment, objects = segment_in_viewer(viewer)
    kept = objects.features.loc[objects.features["status"] == "chromosome", "label"].astype(int)
    segment.set_status(int(kept.iloc[0]), "rejected")
    calls = pd.DataFrame({"label": kept.to_numpy(), "class": "A", "p_A": 0.9, "p_B": 0.1})
    viewer.add_labels(np.asarray(objects.data), name="spread predicted classes", features=calls)

    saved = [layer for layer in viewer.layers if layer._type_string in ("image", "labels")]
    viewer.layers.selection = set(saved)
    written = viewer.layers.save(str(tmp_path / "spread1.chromosort"), selected=True, plugin=PLUGIN)
    folder = tmp_path / "spread1.chromosort"
    assert (folder / "work.json").is_file() and written

    reopened = make_napari_viewer()
    reopened.open(folder, plugin=PLUGIN)
    assert [layer.name for layer in reopened.layers] == [layer.name for layer in saved]
    again = reopened.layers["spread objects"]
    np.testing.assert_array_equal(again.data, objects.data)
    before = objects.features.set_index("label")["status"]
    after = again.features.set_index("label")["status"]
    assert after.to_dict() == before.to_dict() and (after == "rejected").sum() == 1
    assert again.metadata["chromosort"]["kind"] == "segmentation"
    assert list(reopened.layers["spread predicted classes"].features["class"]) == ["A"] * len(kept)
    # Segment takes the reopened objects over: status colours, and K / R act on them
    segment_again = SegmentWidget(reopened)
    assert segment_again.current_layer() is again
    kept_colour = again.colormap.map(np.array([int(kept.iloc[1])]))[0]
    rejected_colour = again.colormap.map(np.array([int(kept.iloc[0])]))[0]
    assert not np.allclose(kept_colour, rejected_colour)
    segment_again.select(int(kept.iloc[1]), again)
    segment_again.set_status(None, "rejected")
    assert (again.features["status"] == "rejected").sum() == 2
    # the reopened objects are the reviewed objects Predict uses for the spread
    predict = PredictWidget(reopened)
    predict.image_picker.value = reopened.layers["spread"]
    assert predict.objects_picker.value is again


def test_work_folder_that_points_outside_is_refused(tmp_path):
    labels = np.zeros((8, 8), np.int32)
    labels[2:5, 2:5] = 1
    save_work(tmp_path / "w", [(labels, {"name": "objects"}, "labels")])
    folder = tmp_path / "w.chromosort"
    assert read_work(folder)[0][1]["name"] == "objects"
    index = json.loads((folder / "work.json").read_text())
    index["layers"][0]["file"] = "../../elsewhere.tif"
    (folder / "work.json").write_text(json.dumps(index))
    with pytest.raises(ChromosortError, match="outside|climbs out"):
        read_work(folder)
    (folder / "work.json").write_text(json.dumps({"format": "something else", "layers": []}))
    with pytest.raises(ChromosortError, match="not a napari-chromosome-sort work index"):
        read_work(folder)


def test_only_image_and_labels_layers_are_saved(tmp_path):
    with pytest.raises(ChromosortError, match="image and labels layers only"):
        save_work(tmp_path / "w", [(np.zeros((3, 2)), {"name": "pts"}, "points")])


def test_a_layers_folder_that_is_a_link_is_never_written_through(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = tmp_path / "spread.chromosort"
    folder.mkdir()
    (folder / "layers").symlink_to(elsewhere, target_is_directory=True)
    layers = [
        (np.zeros((4, 4), np.uint8), {"name": "spread"}, "image"),
        (np.zeros((4, 4), np.int32), {"name": "spread objects"}, "labels"),
    ]
    with pytest.raises(ChromosortError, match="link"):
        save_work(folder, layers)
    assert list(elsewhere.iterdir()) == []
    assert not (folder / "work.json").exists()
