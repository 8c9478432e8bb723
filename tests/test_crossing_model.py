"""The learned crossing score: model file, spread-relative scores, shape measures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.segmentation.learned.crossing_score import (
    FEATURES,
    L2_GRID,
    CrossingModel,
    CrossingTable,
    choose_head,
    crossing_candidates,
    fit_crossing_model,
    load_crossing_model,
    shape_measures,
    skeleton_counts,
    spread_relative,
)


def _model(**kw) -> CrossingModel:
    n = len(FEATURES)
    fields = dict(
        mean=(0.0,) * n,
        scale=(1.0,) * n,
        coef=(1.0,) + (0.0,) * (n - 1),
        intercept=-1.0,
        threshold=2.0,
        typical_median=0.5,
        min_objects=4,
    )
    return CrossingModel(**{**fields, **kw})


def test_shipped_model_loads_and_round_trips(tmp_path):
    model = load_crossing_model()
    assert model.features == FEATURES and "ADIR" in model.provenance
    path = model.save(tmp_path / "m.json")
    assert load_crossing_model(path) == model


def test_scores_are_relative_to_the_spread():
    model = _model()
    x = np.zeros((6, len(FEATURES)))
    x[:, 0] = [1, 2, 3, 4, 5, 30]  # logit = value - 1
    z = model.relative_scores(x)
    assert np.allclose(z, x[:, 0] - 1 - np.median(x[:, 0] - 1))
    # the same objects in a spread whose typical object scores 10 higher: same relative scores
    shifted = x.copy()
    shifted[:, 0] += 10
    assert np.allclose(model.relative_scores(shifted), z)
    # too few objects for a median: the training spreads' typical median is the reference
    assert np.allclose(model.relative_scores(x[:3]), x[:3, 0] - 1 - 0.5)


def test_only_large_single_pieces_are_flagged():
    """A crossing is two chromosomes: pieces under ``min_rel_area`` x the median object (e.g. one
    chromosome with open sister chromatids) and grouped chromatid pairs are never flagged."""
    model = _model(coef=(0.0,) * (len(FEATURES) - 2) + (1.0, 0.0), min_rel_area=1.8)
    x = np.zeros((12, len(FEATURES)))
    x[:, FEATURES.index("n_parts")] = 1
    col = FEATURES.index("contact_brightness")  # the only weighted feature of this model
    x[:3, col] = 10.0  # three high scores ...
    x[0, 0] = np.log(2.0)  # ... one large single piece
    x[1, 0] = np.log(1.5)  # ... one chromosome-sized
    x[2, 0] = np.log(3.0)  # ... one large grouped pair
    x[2, FEATURES.index("n_parts")] = 2
    assert model.flags(x).tolist() == [True] + [False] * 11
    assert not model.flags(x, threshold=20.0).any()
    assert model.flags(x[:0]).shape == (0,)


@pytest.mark.parametrize(
    "text, match",
    [
        ("{not json", "cannot read"),
        (json.dumps({"format": "something else"}), "not a crossing model"),
        (json.dumps({"format": "chromosort-crossing-model/1", "mean": [0]}), "malformed"),
    ],
)
def test_bad_model_files_are_named(tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ChromosortError, match=match):
        load_crossing_model(path)
    with pytest.raises(ChromosortError, match="cannot read"):
        load_crossing_model(tmp_path / "missing.json")


def test_model_checks_its_shapes():
    with pytest.raises(ChromosortError, match="'coef' must have"):
        _model(coef=(1.0,))
    with pytest.raises(ChromosortError, match="scale"):
        _model(scale=(0.0,) * len(FEATURES))
    with pytest.raises(ChromosortError, match="expects features"):
        _model(features=("area",) * len(FEATURES))


def test_skeleton_counts_of_rod_and_cross():
    rod = np.zeros((40, 40), bool)
    rod[18:23, 5:35] = True
    assert skeleton_counts(rod, 3) == (2, 0)
    cross = rod | rod.T
    ends, branches = skeleton_counts(cross, 3)
    assert ends == 4 and branches >= 1


def test_shape_measures_tell_a_cross_from_a_rod():
    labels = np.zeros((60, 120), np.int32)
    labels[28:33, 5:45] = 1  # rod
    labels[28:33, 65:105] = 2  # cross: rod + rod across it
    labels[10:50, 83:88] = 2
    signal = (labels > 0).astype(np.float32)
    x = shape_measures(labels, signal, [1, 2], median_area=200, width=5, n_parts=[1, 1])
    f = dict(zip(FEATURES, x.T, strict=True))
    assert f["skeleton_ends"][0] == 2 and f["skeleton_ends"][1] == 4
    assert f["solidity"][1] < f["solidity"][0]
    assert f["log_rel_area"][1] > f["log_rel_area"][0]
    assert np.all(f["n_parts"] == 1)
    assert shape_measures(labels, signal, [], 200, 5, []).shape == (0, len(FEATURES))


@pytest.mark.slow
def test_shipped_model_is_what_the_training_makes(dapi_dir, tmp_path):
    """Retraining on the real DAPI spreads reproduces the shipped coefficients: a change to the
    segmentation or the measures that would make the shipped model stale fails here."""
    from validation.crossing import crossing_report

    out = tmp_path / "model.json"
    tables = crossing_report(out, cache=tmp_path / "cache")
    retrained, shipped = load_crossing_model(out), load_crossing_model()
    for name in ("mean", "scale", "coef"):
        assert np.allclose(getattr(retrained, name), getattr(shipped, name), rtol=1e-6), name
    assert np.isclose(retrained.intercept, shipped.intercept, rtol=1e-6)
    assert np.isclose(retrained.threshold, shipped.threshold)
    assert retrained.min_rel_area == shipped.min_rel_area
    assert bool(tables["retrained"]["same_as_shipped"].iloc[0])
    held = tables["held_out"].set_index("held_out")
    assert held.loc["all", "singles_lost_share"] <= 0.05  # the budget is 3 % inside each split


def _table(rng, n_spreads=16, per_spread=40):
    """Synthetic objects: overlap objects are large with many skeleton ends, singles are not."""
    n = n_spreads * per_spread
    positive = rng.random(n) < 0.15
    x = rng.normal(0, 0.3, (n, len(FEATURES)))
    x[:, FEATURES.index("n_parts")] = 1
    # some singles are as large as a crossing: the score must tell them apart by shape
    x[:, FEATURES.index("log_rel_area")] = np.where(positive, np.log(2.5), 0.0) + 2 * x[:, 0]
    x[:, FEATURES.index("skeleton_ends")] = np.where(positive, 4.0, 2.0) + x[:, 6]
    spreads = np.repeat(np.arange(n_spreads), per_spread)
    return CrossingTable(
        x=x,
        positive=positive,
        n_match=(~positive).astype(int),
        kept=rng.random(n) < 0.9,
        spreads=spreads,
        groups=spreads // 2,
    )


def test_fit_crossing_model_separates_overlaps_within_its_budget():
    table = _table(np.random.default_rng(0))
    model = fit_crossing_model(table, budget=0.03, provenance="synthetic")
    assert model.provenance.startswith("synthetic; L2 logistic regression C=")
    flagged = np.zeros(len(table.x), bool)
    for s in np.unique(table.spreads):
        here = table.spreads == s
        flagged[here] = model.flags(table.x[here], table.x[here & table.kept])
    kept_pos = table.kept & table.positive & crossing_candidates(table.x, model.min_rel_area)
    assert flagged[kept_pos].mean() > 0.8
    assert flagged[table.matched].mean() <= 0.05
    # the same rows give the same model; a subset of rows is its own fit
    assert fit_crossing_model(table, budget=0.03, provenance="synthetic") == model
    assert fit_crossing_model(table, np.flatnonzero(table.groups < 6)).coef != model.coef


def test_choose_head_threshold_loses_the_budget_of_singles():
    table = _table(np.random.default_rng(1))
    rows = np.arange(len(table.x))
    c, threshold, caught = choose_head(table, rows, budget=0.1, min_rel_area=0.0)
    assert c in L2_GRID and caught > 0
    lenient = choose_head(table, rows, budget=0.3, min_rel_area=0.0)
    assert lenient[1] <= threshold and lenient[2] >= caught


def test_spread_relative_subtracts_each_spreads_kept_median():
    logits = np.array([1.0, 2.0, 10.0, 5.0, 7.0, np.nan])  # spread 2 not scored (held out)
    spreads = np.array([0, 0, 0, 1, 1, 2])
    kept = np.array([True, True, False, True, True, True])
    z = spread_relative(logits, spreads, kept)
    assert np.allclose(z[:5], [-0.5, 0.5, 8.5, -1.0, 1.0]) and np.isnan(z[5])
