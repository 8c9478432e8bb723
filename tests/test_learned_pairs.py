"""The learned decision whether two neighbouring parts are one chromosome (learned_pairs)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.segmentation import SegmentationParams, load_segmentation_model
from napari_chromosome_sort.segmentation.learned import (
    TrainingSpread,
    apply_model,
    candidates,
    learn_segmentation,
)
from napari_chromosome_sort.segmentation.learned.pairs import (
    PAIR_FEATURES,
    PairOptions,
    pair_gain,
    pair_truth,
    regroup,
    shows_sisters,
)
from napari_chromosome_sort.segmentation.truth import BOX_COLUMNS, matched_objects
from napari_chromosome_sort.synthetic import make_spread

# the planted error: the rules' pairing gap is too tight, so some separated sister chromatids
# stay two objects
TIGHT_GAP = SegmentationParams(pair_max_gap_factor=0.5)


def _spread(seed: int) -> TrainingSpread:
    s = make_spread(
        seed=seed, n_chromosomes=30, n_nuclei=0, n_debris=0, n_clusters=0, classes=("A", "C")
    )
    boxes = s.truth.loc[s.truth["kind"] == "chromosome", BOX_COLUMNS].to_numpy(float)
    return TrainingSpread(f"s{seed}", s.image, boxes)


def _found(seg, boxes) -> int:
    kept = seg.objects[seg.objects["status"] == "chromosome"]
    return int(matched_objects(boxes, kept).sum())


@pytest.fixture(scope="module")
def tight():
    spread = _spread(2)
    return spread, candidates(spread.image, TIGHT_GAP)


@pytest.fixture(scope="module")
def model():
    spread = _spread(1)
    return learn_segmentation([spread], TIGHT_GAP, {"peak_fraction": [0.5]})


def _with_pairs(model, intercept: float):
    """``model`` with a pair classifier that gives every pair the same probability."""
    n = len(PAIR_FEATURES)
    return replace(
        model, pair_mean=(0.0,) * n, pair_scale=(1.0,) * n, pair_coef=(0.0,) * n,
        pair_intercept=intercept,
    )  # fmt: skip


def _options(same: list[bool]) -> PairOptions:
    """Parts 1-4: 1 and 2 one object (label 10), 3 (label 11) and 4 (label 12) alone; pairs
    (1, 2), (2, 3), (3, 4)."""
    parts = pd.DataFrame(
        {
            "part": [1, 2, 3, 4],
            "label": [10, 10, 11, 12],
            "area": [50, 50, 50, 50],
            "bbox_y0": [0, 0, 0, 0],
            "bbox_x0": [0, 6, 12, 18],
            "bbox_y1": [20, 20, 20, 20],
            "bbox_x1": [5, 11, 17, 23],
        }
    )
    pairs = pd.DataFrame({"a": [1, 2, 3], "b": [2, 3, 4], "same_object": same})
    for column in PAIR_FEATURES:
        pairs[column] = 0.0
    return PairOptions(parts, pairs)


def test_regroup_cuts_unlikely_pairs_and_joins_likely_free_parts():
    options = _options([True, False, False])
    assert sorted(map(sorted, regroup(options, np.array([0.9, 0.8, 0.1])))) == [[1, 2], [3], [4]]
    # the rules' pair cut apart: its parts are free, the most probable free pair is joined first
    groups = regroup(options, np.array([0.2, 0.9, 0.7]))
    assert sorted(map(sorted, groups)) == [[1], [2, 3], [4]]
    groups = regroup(options, np.array([0.2, 0.6, 0.7]))
    assert sorted(map(sorted, groups)) == [[1], [2], [3, 4]]


def test_pair_truth_wants_the_union_to_match_better_than_either_part():
    options = _options([False, False, False])
    options.pairs[BOX_COLUMNS] = [[0, 0, 20, 11], [0, 6, 20, 17], [0, 12, 20, 23]]
    truth = np.array([[0, 0, 20, 11], [0, 18, 20, 23]], float)
    assert pair_truth(options, truth).tolist() == [True, False, False]


def test_joining_the_sisters_the_rules_left_apart_recovers_their_chromosomes(tight, model):
    spread, c = tight
    assert shows_sisters(c.pairs)
    before = _found(c.seg, spread.boxes)
    assert before < len(spread.boxes)  # the planted error costs chromosomes
    joined = apply_model(c, _with_pairs(model, 3.0))
    assert _found(joined, spread.boxes) > before
    new = joined.objects["reason"].str.contains("parts joined as one chromosome")
    assert new.any()
    for row in joined.objects[new].itertuples():
        assert (joined.labels == row.label).sum() == row.area
        assert row.n_parts == 2
    assert set(np.unique(joined.labels)) - {0} == set(joined.objects["label"])
    # every pair unlikely: the rules' pairs are cut apart into their chromatids
    cut = apply_model(c, _with_pairs(model, -3.0))
    pieces = cut.objects["reason"].str.startswith("part of an object cut apart")
    rules_pairs = int(c.pairs.pairs["same_object"].sum())
    assert pieces.sum() == 2 * rules_pairs
    assert (cut.objects["status"] == "chromosome").sum() == (
        (c.seg.objects["status"] == "chromosome").sum() + rules_pairs
    )


def test_pair_gain_counts_the_boxes_regrouping_gains_on_held_out_folds(tight, model):
    spread, c = tight
    joined = _found(apply_model(c, _with_pairs(model, 3.0)), spread.boxes)
    always = lambda x, y: lambda z: np.ones(len(z))  # noqa: E731
    never = lambda x, y: lambda z: np.zeros(len(z))  # noqa: E731
    gain = pair_gain([c.pairs], [spread.boxes], always, 1)
    assert gain > 0 and gain == joined - _found(c.seg, spread.boxes)
    assert pair_gain([c.pairs], [spread.boxes], never, 1) <= 0
    # a spread without sister pairs grouped by the rules is regrouped only by a classifier
    # learned on such spreads
    alone = PairOptions(c.pairs.parts, c.pairs.pairs.assign(same_object=False))
    assert pair_gain([alone], [spread.boxes], always, 1) == 0
    assert pair_gain([alone], [spread.boxes], always, 1, sisters=False) == gain


def test_a_pair_classifier_regroups_only_spreads_of_the_kind_it_learned_from(tight, model):
    spread, c = tight
    closed_kind = replace(_with_pairs(model, 3.0), pair_sisters=False)
    seg = apply_model(c, closed_kind)
    assert _found(seg, spread.boxes) == _found(c.seg, spread.boxes)
    assert not seg.objects["reason"].str.contains("parts joined").any()


def test_a_model_without_a_gain_never_regroups(tight, model):
    spread, c = tight
    assert not model.pairs  # no wrong pairs to learn from: no pair classifier
    assert "pairs_right" in model.examples
    seg = apply_model(c, model)
    assert _found(seg, spread.boxes) == _found(c.seg, spread.boxes)


def test_a_model_with_a_pair_classifier_round_trips_and_is_checked(model, tmp_path):
    paired = _with_pairs(model, 1.5)
    path = paired.save(tmp_path / "m.json")
    again = load_segmentation_model(path)
    assert again.pairs and again.pair_intercept == 1.5 and again == paired
    data = json.loads(path.read_text())
    data["pair_coef"] = data["pair_coef"][:-1]
    path.write_text(json.dumps(data))
    with pytest.raises(ChromosortError, match="pair classifier"):
        load_segmentation_model(path)


def test_a_model_of_the_third_format_still_loads(model, tmp_path):
    data = json.loads(model.to_json())
    data["format"] = "chromosort-segmentation-model/3"
    for key in ("pair_mean", "pair_scale", "pair_coef", "pair_intercept", "pair_features"):
        del data[key]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    old = load_segmentation_model(path)
    assert not old.pairs and old.coef == model.coef
