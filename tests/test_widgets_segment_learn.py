"""Segment spread learns from the spreads you review, through a real napari viewer: the count of
examples, the model choice, segmenting the next spread with the model (it fixes a planted
error), what it changed, least sure first, saving and loading the model file."""

from __future__ import annotations

import numpy as np
import pytest

from napari_chromosome_sort.segmentation.learned import (
    P_COLUMN,
    least_sure_first,
    load_segmentation_model,
)
from napari_chromosome_sort.segmentation.truth import BOX_COLUMNS, matched_objects
from napari_chromosome_sort.synthetic import make_spread

# the planted systematic error: no size limits, so debris specks and tangles are kept
PLANTED = {"debris_area_fraction": 0.0, "split_touching": False, "cluster_area_factor": 100}
ONE_SETTING = {"peak_fraction": [0.5]}  # the settings search kept short (one segmentation)


def _spread(seed: int):
    return make_spread(seed=seed, n_chromosomes=20, n_nuclei=1, n_debris=10, n_clusters=2)


def _truth(spread) -> np.ndarray:
    return spread.truth.loc[spread.truth["kind"] == "chromosome", BOX_COLUMNS].to_numpy(float)


def _kept_and_wrong(layer, truth) -> tuple[int, int]:
    kept = layer.features[layer.features["status"] == "chromosome"]
    return len(kept), len(kept) - int(matched_objects(truth, kept).sum())


def _segment_again(widget, qtbot, image_name: str):
    widget.image_picker.value = widget.viewer.layers[image_name]
    widget.run()
    qtbot.waitUntil(
        lambda: f"{image_name} objects" in widget.viewer.layers and not widget.running,
        timeout=60000,
    )
    return widget.viewer.layers[f"{image_name} objects"]


@pytest.fixture
def reviewed(make_napari_viewer, qtbot, segment_in_viewer):
    """A viewer with the synthetic spread ``spread`` segmented with the planted error and
    reviewed as a user would (K on the truth chromosomes, R on every other object); returns
    ``(viewer, widget, objects layer)``."""
    train = _spread(31)
    viewer = make_napari_viewer()
    viewer.add_image(train.image, name="spread")
    widget, layer = segment_in_viewer(viewer)
    for name, value in PLANTED.items():
        widget.param_widgets[name].value = value
    layer = _segment_again(widget, qtbot, "spread")
    widget.learning.session.grid = ONE_SETTING
    hit = matched_objects(_truth(train), layer.features)
    for label, is_chromosome in zip(layer.features["label"].astype(int), hit, strict=True):
        widget.select(label)
        widget.keep_button.click() if is_chromosome else widget.reject_button.click()
    return viewer, widget, layer


def _learn(widget, qtbot):
    widget.learning.learn_button.click()
    qtbot.waitUntil(lambda: not widget.learning.learning, timeout=120000)


def test_learn_from_a_reviewed_spread_then_segment_the_next_one_with_it(reviewed, qtbot):
    viewer, widget, layer = reviewed
    panel = widget.learning
    assert panel.choice.currentText() == "Built-in rules" and panel.model() is None
    session_item = panel.choice.model().item(panel.choice.findData("session"))
    assert not session_item.isEnabled()  # nothing learned: nothing to choose
    _learn(widget, qtbot)
    model = panel.session.model
    examples = model.examples
    assert panel.count.text() == (
        f"Learned from 1 spread: {examples['chromosome']} chromosomes, "
        f"{examples['other']} other objects."
    )
    assert examples["chromosome"] >= 15 and examples["other"] >= 8
    assert session_item.isEnabled() and panel.save_button.isEnabled()
    assert panel.model() is None  # learning never replaces the rules by itself

    # the next spread: the rules keep the planted error, the chosen model fixes it
    test = _spread(32)
    viewer.add_image(test.image, name="next")
    rules_layer = _segment_again(widget, qtbot, "next")
    kept_rules, wrong_rules = _kept_and_wrong(rules_layer, _truth(test))
    assert wrong_rules >= 8
    assert "next model changes" not in viewer.layers and P_COLUMN not in rules_layer.features
    panel.choose("session")
    assert panel.model() is model
    next_layer = _segment_again(widget, qtbot, "next")
    kept, wrong = _kept_and_wrong(next_layer, _truth(test))
    assert wrong <= 1 and kept >= kept_rules - wrong_rules - 1

    # before/after: the summary line and the marks of what changed
    assert f"model: {kept} kept (rules: {kept_rules}); " in widget.model_summary.text()
    marks = viewer.layers["next model changes"]
    assert (marks.features["change"] == "rejected").sum() >= wrong_rules - 1
    assert viewer.layers.selection.active is next_layer

    # the layer remembers its model (plain data: a saved and reopened work folder keeps it)
    import json

    from napari_chromosome_sort._widgets.segment_learning import layer_model

    meta = next_layer.metadata["chromosort"]
    assert json.loads(json.dumps(meta)) == meta and layer_model(next_layer) == model

    # least sure first: Next follows the model's doubt, the table holds its probability
    assert next_layer.features[P_COLUMN].between(0, 1).all()
    order = least_sure_first(next_layer.features, model)["label"].tolist()
    widget.step_filter.setCurrentText("every object")
    widget.next_button.click()
    assert widget._selected == order[0]
    widget.next_button.click()
    assert widget._selected == order[1]
    assert "learned: p=" in widget.selection_label.text()
    widget.keep_button.click()  # reviewed: the model's probability stays in the table
    assert "kept by user" in widget.selection_label.text()
    assert "model p=" in widget.selection_label.text()
    widget.next_button.click()
    assert widget._selected == order[2]  # the order does not move under the review

    # back to the rules: their review order, no marks
    panel.choose("rules")
    _segment_again(widget, qtbot, "next")
    assert "next model changes" not in viewer.layers and widget.model_summary.text() == ""


def test_learning_accumulates_spreads_and_a_review_without_chromosomes_is_a_message(
    reviewed, qtbot, monkeypatch
):
    from napari_chromosome_sort._widgets.segment_learning import NOTHING_LEARNED

    viewer, widget, layer = reviewed
    panel = widget.learning
    kept = layer.features.loc[layer.features["status"] == "chromosome", "label"].astype(int)
    shown = []
    monkeypatch.setattr("napari_chromosome_sort._widgets.segment_learning.show_error", shown.append)
    for label in kept:
        widget.set_status(label, "rejected")
    _learn(widget, qtbot)  # every object rejected: nothing is a chromosome
    assert "nothing learned" in panel.message.text() and len(shown) == 1
    assert panel.session.model is None and panel.count.text() == NOTHING_LEARNED
    for label in kept:
        widget.set_status(label, "chromosome")

    _learn(widget, qtbot)
    first = panel.session.model
    second = _spread(36)
    viewer.add_image(second.image, name="second")
    second_layer = _segment_again(widget, qtbot, "second")
    hit = matched_objects(_truth(second), second_layer.features)
    for label in second_layer.features.loc[~hit, "label"].astype(int):
        widget.set_status(label, "rejected")
    _learn(widget, qtbot)
    both = panel.session.model
    assert both.spreads == ("spread", "second")
    assert both.examples["chromosome"] > first.examples["chromosome"]
    assert panel.count.text().startswith("Learned from 2 spreads: ")


def test_save_and_load_the_model_and_a_corrupt_file_keeps_the_current_one(
    reviewed, qtbot, tmp_path, monkeypatch
):
    viewer, widget, layer = reviewed
    panel = widget.learning
    _learn(widget, qtbot)
    saved = panel.save_model(tmp_path / "lab")
    assert saved == tmp_path / "lab.json" and "lab.json" in panel.message.text()
    assert load_segmentation_model(saved) == panel.session.model
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically: nothing left beside it

    assert panel.load_model(saved)
    assert panel.choice.currentText() == "From file: lab.json"
    assert panel.model() == panel.session.model and panel.model() is not panel.session.model
    assert "Learned from 1 spread" in panel.message.text()

    shown = []
    monkeypatch.setattr("napari_chromosome_sort._widgets.segment_learning.show_error", shown.append)
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    before = panel.model()
    assert not panel.load_model(bad)
    assert "cannot read segmentation model" in panel.message.text()
    assert len(shown) == 1 and "\n" not in shown[0]
    assert panel.model() is before and panel.choice.currentText() == "From file: lab.json"
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"format": "chromosort-crossing-model/1"}')
    assert not panel.load_model(foreign)
    assert "not a segmentation model" in panel.message.text() and panel.model() is before

    # "From file…" in the model choice asks for a file; cancelling keeps the choice
    monkeypatch.setattr(panel, "_ask_open_path", lambda: "")
    panel.choice.setCurrentIndex(panel.choice.findData("pick"))
    assert panel.choice.currentText() == "From file: lab.json" and panel.model() is before
