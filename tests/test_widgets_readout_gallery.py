"""Readout and gallery dock widgets, driven through a real napari viewer."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from napari_chromosome_sort._widgets.gallery import GalleryWidget
from napari_chromosome_sort._widgets.readout import ReadoutWidget
from napari_chromosome_sort.analysis import readout
from napari_chromosome_sort.classification.models import model_io
from napari_chromosome_sort.sorter import REVIEW


def _labels_with_calls(viewer, name, dist, n, seed):
    rng = np.random.default_rng(seed)
    data = np.zeros((40, 40 * n // 10 + 40), np.int32)
    for i in range(n):
        data[(i % 10) * 4 : (i % 10) * 4 + 3, (i // 10) * 4 : (i // 10) * 4 + 3] = i + 1
    features = pd.DataFrame(
        {
            "label": np.arange(1, n + 1),
            "status": "chromosome",
            "class": rng.choice(list(dist), n, p=list(dist.values())),
        }
    )
    return viewer.add_labels(data, name=name, features=features)


def test_readout_widget_layers_and_table(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    _labels_with_calls(viewer, "WT spread", readout.PAPER_DISTRIBUTIONS["WT"], 150, 0)
    _labels_with_calls(viewer, "KO spread", readout.PAPER_DISTRIBUTIONS["CTF18-/-"], 150, 1)
    viewer.add_labels(np.zeros((5, 5), np.int32), name="no calls")
    widget = ReadoutWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.compute()
    assert widget.summary is not None and set(widget.summary["sample"]) == {
        "WT spread",
        "KO spread",
    }
    # one spread per sample: the per-chromosome test would call it, the spreads cannot
    comparison = widget.comparisons[0]
    assert len(widget.comparisons) == 1 and comparison.secondary.significant
    assert comparison.replicates == "spreads" and not comparison.significant
    text = widget.result_label.text()
    assert "no p below 1 is possible" in text and "Cramér's V" in text
    assert "WT spread (1 spread, 150 chromosomes)" in text
    assert len(widget.figure.axes) == 1 and len(widget.figure.axes[0].patches) >= 6
    files = widget.save(tmp_path / "saved")
    assert all(f.is_file() for f in files)

    # a predictions table from a batch run
    table = pd.DataFrame({"grp": ["a"] * 30 + ["b"] * 30, "call": list("AB") * 30})
    table.to_csv(tmp_path / "calls.csv", index=False)
    widget.load_table(tmp_path / "calls.csv")
    widget.sample_col.setCurrentText("grp")
    widget.class_col.setCurrentText("call")
    widget.compute()
    assert set(widget.summary["sample"]) == {"a", "b"}
    assert not widget.comparisons[0].significant


def test_readout_groups_spreads_into_named_samples(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    for i in range(2):
        _labels_with_calls(viewer, f"wt {i} predicted classes", {"A": 0.8, "B": 0.2}, 60, i)
        _labels_with_calls(viewer, f"ko {i} predicted classes", {"A": 0.3, "B": 0.7}, 60, 9 + i)
    widget = ReadoutWidget(viewer)
    # each spread starts as its own sample, named after its image
    assert [sample for _, _, sample in widget.spread_rows()][:2] == ["wt 0", "ko 0"]
    for i in range(2):
        widget.set_sample(f"wt {i} predicted classes", "WT")
        widget.set_sample(f"ko {i} predicted classes", "mutant")
    widget.compute()
    totals = widget.summary.drop_duplicates("sample").set_index("sample")["n"]
    assert totals.to_dict() == {"WT": 120, "mutant": 120}
    assert "2 vs 2 spreads" in " ".join(widget.figure.axes[0].get_title(loc="left").split())
    assert not widget.comparisons[0].significant  # 2 vs 2 spreads: p >= 1/3 whatever n
    # calls corrected by hand (a 'corrected' feature) are counted and shown
    layer = viewer.layers["wt 0 predicted classes"]
    features = layer.features.copy()
    features["corrected"] = [True] * 3 + [False] * (len(features) - 3)
    layer.features = features
    widget.compute()
    assert "WT (2 spreads, 120 chromosomes)" in widget.result_label.text()
    assert "3 calls corrected by hand" in widget.result_label.text()
    assert "WT: 3 of 120" in widget.result_label.text()
    # a new layer keeps the names typed so far
    viewer.add_labels(np.zeros((5, 5), np.int32), name="other")
    assert ("wt 1 predicted classes", True, "WT") in widget.spread_rows()

    # a table: numeric columns are not offered as classes, and are refused if typed in
    table = pd.DataFrame({"sample": ["a"] * 20, "class": list("AB") * 10, "area": range(20)})
    table.to_csv(tmp_path / "calls.csv", index=False)
    widget.load_table(tmp_path / "calls.csv")
    offered = [widget.class_col.itemText(i) for i in range(widget.class_col.count())]
    assert offered[0] == "class" and "area" not in offered
    widget.class_col.addItem("area")
    widget.class_col.setCurrentText("area")
    shown = []
    import napari_chromosome_sort._widgets.shared.workers as common

    original, common.show_error = common.show_error, shown.append
    try:
        widget.compute()
    finally:
        common.show_error = original
    assert shown and "class column" in shown[0]


def test_readout_bars_in_the_class_colours_of_the_spread(make_napari_viewer):
    """Predict's layers: each sample is named after its image and each class's bars have the
    colour its chromosomes have on the spread (the model's class order, from the p_ columns)."""
    from matplotlib.colors import to_hex

    from napari_chromosome_sort.display.colours import class_colours

    viewer = make_napari_viewer()
    dist = {"C": 0.2, "A": 0.5, "B": 0.3}  # calls listed in another order than the model's
    for name, seed in (("WT", 0), ("KO", 1)):
        layer = _labels_with_calls(viewer, f"{name} predicted classes", dist, 60, seed)
        features = layer.features.copy()
        for cls in "ABC":
            features[f"p_{cls}"] = 1 / 3
        layer.features = features
    widget = ReadoutWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.compute()
    assert set(widget.summary["sample"]) == {"WT", "KO"}
    expected = class_colours(["A", "B", "C"])
    ax = widget.figure.axes[0]
    handles, names = ax.get_legend_handles_labels()
    assert {
        n: to_hex(h.patches[0].get_facecolor()) for h, n in zip(handles, names, strict=True)
    } == {c: to_hex(v) for c, v in expected.items()}


def test_gallery_widget_classify_and_correct(make_napari_viewer, qtbot, tmp_path):
    import torch

    from napari_chromosome_sort.classification.features import Preprocessing
    from napari_chromosome_sort.classification.models.backbones import build_backbone
    from napari_chromosome_sort.classification.models.classifier import (
        ChromosomeClassifier,
        squeezenet_conv_head,
    )

    torch.manual_seed(0)
    model = ChromosomeClassifier(
        build_backbone("squeezenet1_1", "random"),
        squeezenet_conv_head(2),
        ["mitotic", "interphase"],
        Preprocessing(size=64, appearance="plain", geometry="stretch"),
        "squeezenet_conv",
        metadata={"task": "whole_image_sorter"},
    )
    model_io.save_model(model, tmp_path / "sorter.safetensors")
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    viewer = make_napari_viewer()
    widget = GalleryWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.set_model(tmp_path / "sorter.safetensors")
    widget.set_folder(folder)
    widget.set_dataset(tmp_path / "dataset")
    worker = widget.run()
    with qtbot.waitSignal(worker.finished, timeout=60000):
        pass
    qtbot.waitUntil(lambda: widget.table is not None, timeout=10000)
    assert len(widget.table) == 5
    assert sum(lst.count() for lst in widget.lists.values()) == 5
    assert widget.tabs.count() == 3 and REVIEW in widget.lists
    # a correction is copied into the training set and regroups the thumbnail
    path = widget.table["file"].iloc[0]
    dest = widget.correct(path, "interphase")
    assert dest == tmp_path / "dataset" / "interphase" / "0.png" and dest.is_file()
    assert (folder / "0.png").is_file()  # original kept
    items = [
        widget.lists["interphase"].item(i).text() for i in range(widget.lists["interphase"].count())
    ]
    assert any(t.startswith("0.png") for t in items)
    assert widget.correct(path, "mitotic") == tmp_path / "dataset" / "mitotic" / "0.png"
    assert not dest.exists()
    assert widget.correct(path, "nonsense") is None
