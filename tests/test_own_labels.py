"""Training on a lab's own crops beside a reference set moved onto their look, and the
own-labels protocol's scoring (``validation.own_labels``)."""

from __future__ import annotations

import numpy as np
import pytest
from validation.own_labels import SpreadSet, pooled, score

from napari_chromosome_sort.classification.config import TrainingConfig
from napari_chromosome_sort.classification.models.heads import (
    head_logits,
    reference_shift,
    tta_proba,
)
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
    assert "prediction_priors" not in model.metadata  # no spreads named: nothing recorded


def test_prior_adaptation_of_a_reference_model_starts_from_equal_priors(tmp_path):
    """A model trained beside a reference set is class-balanced without a prior correction,
    so its posteriors assume equal priors whatever the training mix: ``--adapt-priors`` must
    start from and divide by those, not the training class frequencies."""
    from napari_chromosome_sort.classification.predict import (
        PriorOptions,
        calibration_priors,
        predict_crops,
    )
    from napari_chromosome_sort.classification.priors import adapt_priors
    from napari_chromosome_sort.synthetic import make_crop

    own = make_crop_dataset(tmp_path / "own", n_per_class=6, classes=("A", "B"), seed=1)
    for extra in sorted((own / "B").iterdir())[2:]:
        extra.unlink()  # training mix 12 A : 8 B, not equal
    ref = make_crop_dataset(tmp_path / "ref", n_per_class=6, classes=("A", "B"), seed=2)
    config = TrainingConfig(
        weights="random", cache_dir=None, input_size=64, views=1, predict_views=1, pca=0, l2=1.0
    )
    model = run_to_end(train_from_folder(own, config, ref))
    assert model.metadata["training"]["counts"] == {"A": 12, "B": 8}
    assert np.allclose(calibration_priors(model), [0.5, 0.5])
    rng = np.random.default_rng(3)
    images = [make_crop(c, rng, 48) for c in "AAAAAB"]
    raw = model.predict_proba(images, tta=False)
    table = predict_crops(model, images, tta=False, priors=PriorOptions(adapt=True))
    expected, _ = adapt_priors(raw, [0.5, 0.5], pseudo_counts=1.0)
    assert np.allclose(table[["p_A", "p_B"]].to_numpy(), expected, atol=1e-6)


def _spread_crops(seed: int = 0):
    """Reference crops (group -1) and own crops of four spreads (groups 0-3), with the look of
    :func:`_domains`, each spread mostly one class."""
    ref_X, ref_y, own_X, own_y, _, _, _ = _domains(seed)
    X = np.concatenate([ref_X, own_X])
    y = np.concatenate([ref_y, own_y])
    reference = np.r_[np.ones(len(ref_y), bool), np.zeros(len(own_y), bool)]
    groups = np.r_[np.full(len(ref_y), -1), np.arange(len(own_y)) % 4]
    return X, y, reference, groups


def test_inner_split_never_mixes_a_spreads_crops(monkeypatch):
    from napari_chromosome_sort.classification.training import spread_design

    X, y, reference, groups = _spread_crops()
    splits = spread_design.spread_splits(groups)
    assert len(splits) == 4
    for tr, te in splits:
        held = np.unique(groups[te])
        assert len(held) == 1 and held[0] >= 0  # one whole own spread held out
        assert not np.isin(groups[tr], held).any()  # none of its crops in training
        assert set(tr) | set(te) == set(range(len(y)))
        assert np.all(reference[np.flatnonzero(groups == -1)])
        assert np.isin(np.flatnonzero(groups == -1), tr).all()  # reference crops always train
    seen = []
    original = spread_design._fold_scores

    def spy(X, y, k, tr, te, *rest):
        seen.append((tr, te))
        yield from original(X, y, k, tr, te, *rest)

    monkeypatch.setattr(spread_design, "_fold_scores", spy)
    config = TrainingConfig(cache_dir=None, pca=0, l2_grid=(1.0, 0.1), views=1)
    design, rows = run_to_end(
        spread_design.choose_by_spread(
            {None: X}, y, 3, groups, reference, config, {"all": np.arange(X.shape[-1])}
        )
    )
    assert len(seen) == 2 * 4  # moved and not, each own spread held out once
    for tr, te in seen:
        assert not set(groups[tr]) & set(groups[te])
    assert len(rows) == 2 * 2 and design["l2"] in (1.0, 0.1)


def test_train_head_chooses_design_by_spread_and_records_it():
    X, y, reference, groups = _spread_crops()
    config = TrainingConfig(
        cache_dir=None, pca=0, l2_grid=(1.0, 0.1), prior_correction=False, design_by_spread=True
    )
    _, info = run_to_end(train_head(X, y, ["a", "b", "c"], config, reference, groups))
    chosen = info["design_by_spread"]
    assert chosen["spreads"] == 4 and len(chosen["candidates"]) == 4
    assert info["members"] == [{"feature_set": "all", "pca": 0, "l2": chosen["l2"]}]
    # asked not to, or crops of only two spreads: the stratified inner CV as before
    off = TrainingConfig(cache_dir=None, pca=0, l2_grid=(1.0, 0.1), design_by_spread=False)
    assert (
        "design_by_spread"
        not in run_to_end(train_head(X, y, ["a", "b", "c"], off, None, groups))[1]
    )
    two = np.where(groups >= 2, 1, groups)
    assert (
        "design_by_spread"
        not in run_to_end(train_head(X, y, ["a", "b", "c"], config, None, two))[1]
    )


def test_spread_groups_read_from_the_manifest(tmp_path):
    from napari_chromosome_sort.classification.training import scan_folder
    from napari_chromosome_sort.classification.training.spread_design import spread_groups
    from napari_chromosome_sort.files.dataset import CropDataset

    data = CropDataset(tmp_path / "own")
    pixels = np.full((16, 16), 200, np.uint8)
    for i, source in enumerate(["s1.png", "s2.png", "s3.png", "s1.png", "s2.png", "s3.png"]):
        data.add(pixels, "A" if i % 2 else "B", source=source, label=i + 1)
    paths, _, _ = scan_folder(data.root)
    groups = spread_groups(data.root, paths)
    names = {p.name.split("_l")[0] for p in paths}
    assert sorted(names) == ["s1", "s2", "s3"]
    by_name = {}
    for p, g in zip(paths, groups, strict=True):
        by_name.setdefault(p.name.split("_l")[0], set()).add(int(g))
    assert all(len(v) == 1 for v in by_name.values()) and len(set().union(*by_name.values())) == 3
    assert spread_groups(tmp_path / "none", paths) is None  # no manifest: no spreads


def test_train_with_reference_chooses_design_by_the_manifests_spreads(own_and_reference):
    own, ref = own_and_reference
    config = TrainingConfig(
        weights="random",
        cache_dir=None,
        input_size=64,
        views=1,
        predict_views=1,
        pca=0,
        l2_grid=(1.0, 0.1),
        design_by_spread=True,
    )
    model = run_to_end(train_from_folder(own.root, config, ref))
    chosen = model.metadata["training"]["chosen"]
    assert chosen["design_by_spread"]["spreads"] == 3
    assert chosen["members"][0]["l2"] == chosen["design_by_spread"]["l2"]
    # each spread's class-mix adaptation chosen on the same spreads and recorded for prediction
    record = model.metadata["prediction_priors"]
    assert "3 spreads" in record["chosen_by"] and len(record["candidates"]) == 5
    assert record["adapt"] == (record["pseudo_counts"] is not None)
