"""Training on a lab's own crops beside a reference set moved onto their look, and the
own-labels protocol's scoring (``validation.own_labels``)."""

from __future__ import annotations

import numpy as np
import pytest
from validation.own_labels import SpreadSet, pooled, score

from napari_chromosome_sort.classification.config import TrainingConfig
from napari_chromosome_sort.classification.heads import head_logits, reference_shift, tta_proba
from napari_chromosome_sort.classification.training import train_from_folder, train_head
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.progress import run_to_end
from napari_chromosome_sort.synthetic import make_crop_dataset


def _domains(seed: int = 0):
    """Reference crops of all three classes; own crops of classes 1 and 2 only, seen through
    another look (a constant move in feature space, towards class 1); own crops of class 0
    held back."""
    rng = np.random.default_rng(seed)
    d = 12
    centres = rng.normal(0, 3, (3, d))
    look = 0.8 * (centres[1] - centres[0])  # the own look of an "a" resembles a reference "b"

    def draw(classes, n, moved):
        y = np.repeat(classes, n)
        X = centres[y] + rng.normal(0, 1, (len(y), d)) + (look if moved else 0)
        return X[:, None, :].astype(np.float32), y

    ref_X, ref_y = draw([0, 1, 2], 60, False)
    own_X, own_y = draw([1, 2], [40, 10], True)
    test_X, test_y = draw([0], 30, True)
    return ref_X, ref_y, own_X, own_y, test_X, test_y, look


def test_reference_shift_recovers_the_look_whatever_the_class_mix():
    ref_X, ref_y, own_X, own_y, _, _, look = _domains()
    X = np.concatenate([ref_X, own_X])
    y = np.concatenate([ref_y, own_y])
    reference = np.r_[np.ones(len(ref_y), bool), np.zeros(len(own_y), bool)]
    move = reference_shift(X, y, reference, 3)
    assert np.abs(move - look).max() < 1.0  # not the class-mix difference of the means
    naive = X[~reference].mean((0, 1)) - X[reference].mean((0, 1))
    assert np.abs(naive - look).max() > 1.0
    # no class with enough crops of both sources: no move
    assert not reference_shift(X[:5], y[:5], reference[:5], 3).any()


def test_reference_moved_onto_own_look_calls_a_class_the_own_crops_lack():
    ref_X, ref_y, own_X, own_y, test_X, test_y, _ = _domains()
    X = np.concatenate([ref_X, own_X])
    y = np.concatenate([ref_y, own_y])
    reference = np.r_[np.ones(len(ref_y), bool), np.zeros(len(own_y), bool)]
    config = TrainingConfig(cache_dir=None, pca=0, l2=0.1, prior_correction=False, views=1)

    def right(ref):
        head, _ = run_to_end(train_head(X, y, ["a", "b", "c"], config, ref))
        return float((tta_proba(head_logits(head, test_X)).argmax(1) == test_y).mean())

    assert right(reference) >= 0.9
    assert right(None) <= 0.5  # the look alone says "not a": the own crops never were


def test_reference_folder_with_an_unknown_class_is_refused(tmp_path):
    own = make_crop_dataset(tmp_path / "own", n_per_class=3, classes=("A", "B"))
    ref = make_crop_dataset(tmp_path / "ref", n_per_class=3, classes=("A", "B", "C"))
    with pytest.raises(ChromosortError, match="class.*C"):
        run_to_end(train_from_folder(own, TrainingConfig(cache_dir=None), ref))


def test_score_and_pooled_name_the_worst_spread():
    def spread(name, truth, pred):
        truth = np.asarray(truth)
        s = SpreadSet(name, np.zeros((len(pred), 1, 2)), truth, np.ones(len(pred), int), truth, {})
        s.box_of = {i: i for i in range(len(truth))}
        return s, np.asarray(pred)

    good, good_pred = spread("g.png", [0, 0, 1, 2], [0, 0, 1, 2])
    bad, bad_pred = spread("b.png", [0, 0, 0, 0], [1, 1, 0, 0])
    rows = [{"recipe": "r", **score(good, good_pred)}, {"recipe": "r", **score(bad, bad_pred)}]
    assert rows[1]["right_of_boxes"] == 0.5
    assert rows[1]["share_error_points"] == pytest.approx(50.0)
    import pandas as pd

    summary = pooled(pd.DataFrame(rows)).iloc[0]
    assert summary["right_of_boxes"] == pytest.approx(6 / 8)
    assert summary["worst_spread"] == "b.png"
    assert summary["spreads_within_10_points"] == 1


def test_training_beside_a_reference_folder_records_it_without_prior_shift(tmp_path):
    own = make_crop_dataset(tmp_path / "own", n_per_class=6, classes=("A", "B"), seed=1)
    ref = make_crop_dataset(tmp_path / "ref", n_per_class=6, classes=("A", "B"), seed=2)
    config = TrainingConfig(
        weights="random", cache_dir=None, input_size=64, views=1, predict_views=1, pca=0, l2=1.0
    )
    model = run_to_end(train_from_folder(own, config, ref))
    training = model.metadata["training"]
    assert training["n"] == 24
    assert training["reference_dataset"] == str(ref.resolve())
    assert training["config"]["prior_correction"] is False
    assert not np.asarray(model.head.logit_shift).any()
