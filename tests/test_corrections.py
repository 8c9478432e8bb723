"""The correction loop's core, without a viewer: ranking, a correction, saving, retraining."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tiny_models import train_tiny_model

from napari_chromosome_sort.classification.training.corrections import (
    CORRECTED,
    CorrectionSession,
    apply_correction,
    class_index,
    least_sure_by_class,
    least_sure_first,
    recall,
)
from napari_chromosome_sort.errors import ChromosortError


def _table():
    return pd.DataFrame(
        {
            "label": [5, 7, 9, 11],
            "class": ["A", "B", "A", "C"],
            "p_A": [0.9, 0.3, 0.5, 0.1],
            "p_B": [0.05, 0.6, 0.4, 0.2],
            "p_C": [0.05, 0.1, 0.1, 0.7],
            "called_by": ["model"] * 4,
        }
    )


def test_least_sure_first_and_a_correction():
    table = _table()
    assert least_sure_first(table, ["A", "B", "C"]) == [9, 7, 11, 5]
    corrected = apply_correction(table, 9, "B")
    assert corrected.loc[corrected["label"] == 9, "class"].item() == "B"
    assert corrected[CORRECTED].tolist() == [False, False, True, False]
    assert corrected.loc[corrected["label"] == 9, "called_by"].item() == "hand"
    assert table["class"].tolist() == ["A", "B", "A", "C"]  # the input is left as it was
    # a corrected call is not offered again
    assert least_sure_first(corrected, ["A", "B", "C"]) == [7, 11, 5]
    with pytest.raises(ChromosortError, match="object 4"):
        apply_correction(table, 4, "B")


def test_the_walk_by_class_takes_the_called_classes_in_turn():
    sure = [0.4, 0.5, 0.6, 0.8, 0.9, 0.45]
    called = ["A", "A", "A", "B", "C", "C"]
    rest = [(1 - p) / 2 for p in sure]
    table = pd.DataFrame(
        {
            "label": [1, 2, 3, 4, 5, 6],
            "class": called,
            **{
                f"p_{c}": [p if k == c else r for p, k, r in zip(sure, called, rest, strict=True)]
                for c in "ABC"
            },
        }
    )
    assert least_sure_first(table, list("ABC")) == [1, 6, 2, 3, 4, 5]
    # the least sure A, B and C first, then the next of each class still left
    assert least_sure_by_class(table, list("ABC")) == [1, 4, 6, 2, 5, 3]
    corrected = apply_correction(table, 4, "C")  # a corrected call leaves the walk
    assert least_sure_by_class(corrected, list("ABC")) == [1, 6, 2, 5, 3]


def test_recall_keeps_hand_calls_and_chromatid_pairs():
    table = apply_correction(_table(), 9, "B")
    table.loc[table["label"] == 11, "called_by"] = "chromatid pair"
    proba = np.array([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.9, 0.05, 0.05], [0.6, 0.3, 0.1]])
    out = recall(table, ["A", "B", "C"], proba)
    assert out["class"].tolist() == ["B", "C", "B", "C"]
    assert out["p_A"].tolist() == [0.1, 0.1, 0.9, 0.6]


def test_class_index_matches_folder_names():
    assert class_index(["A", "B", "C"], "b") == 1
    assert class_index(["A", "B", "C"], "C") == 2
    assert class_index(["A", "B", "C"], "D") == -1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small model trained on synthetic crops (random weights) and its prediction of a
    synthetic spread."""
    from napari_chromosome_sort import synthetic
    from napari_chromosome_sort.classification.predict import predict_spread

    model = train_tiny_model(tmp_path_factory.mktemp("corrections"))
    prediction = predict_spread(model, synthetic.make_spread(seed=0).image)
    return model, prediction


def test_session_saves_each_correction_and_retrains(tiny, tmp_path):
    from napari_chromosome_sort.files.dataset import CropDataset
    from napari_chromosome_sort.progress import run_to_end

    model, prediction = tiny
    dataset = CropDataset(tmp_path / "dataset", classes=model.classes)
    session = CorrectionSession(model, prediction, dataset, spread="s0.png", sample="WT")
    run_to_end(session.prepare())
    assert session.base[0].shape[0] == 18  # the model's 3 x 6 training crops
    # without a correction, the retrained head calls the spread as the model did
    unchanged = run_to_end(session.retrain())
    assert unchanged["class"].tolist() == prediction.table["class"].tolist()

    first = session.least_sure()[0]
    row = prediction.table[prediction.table["label"] == first].iloc[0]
    wrong = next(c for c in model.classes if c != row["class"])
    path = session.correct(first, wrong)
    # saved at once, with the spread and sample it came from
    manifest = dataset.manifest()
    assert len(manifest) == 1 and path.is_file()
    assert manifest["class"].item() == wrong and manifest["source"].item() == "WT/s0.png"
    assert int(manifest["label"].item()) == first
    assert session.n_corrected == 1 and first not in session.least_sure()

    # a second correction of the same call moves its crop, no second copy
    other = next(c for c in model.classes if c not in (row["class"], wrong))
    session.correct(first, other)
    manifest = dataset.manifest()
    assert len(manifest) == 1 and manifest["class"].item() == other

    table = run_to_end(session.retrain())
    assert table.loc[table["label"] == first, "class"].item() == other
    assert table[CORRECTED].sum() == 1
    assert session.model.metadata["training"]["n"] == 19  # 18 training crops + 1 correction
    assert session.model is not model and session.model.backbone is model.backbone
    probabilities = table[[f"p_{c}" for c in model.classes]].to_numpy(float)
    assert np.allclose(probabilities.sum(1), 1, atol=1e-4)


def test_session_refuses_an_unknown_class_and_missing_features(tiny, tmp_path):
    from napari_chromosome_sort.files.dataset import CropDataset
    from napari_chromosome_sort.progress import run_to_end

    model, prediction = tiny
    session = CorrectionSession(model, prediction, CropDataset(tmp_path), spread="s")
    label = int(prediction.table["label"].iloc[0])
    with pytest.raises(ChromosortError, match="not one of the model"):
        session.correct(label, "Z")
    with pytest.raises(ChromosortError, match="prepare"):
        run_to_end(session.retrain())
    with pytest.raises(ChromosortError, match="does not exist"):
        CorrectionSession(
            model, prediction, CropDataset(tmp_path), "s", training_folder=tmp_path / "x"
        )


def test_not_a_chromosome_leaves_the_calls_and_the_dataset(tiny, tmp_path):
    from napari_chromosome_sort.files.dataset import CropDataset
    from napari_chromosome_sort.progress import run_to_end

    model, prediction = tiny
    dataset = CropDataset(tmp_path / "dataset", classes=model.classes)
    session = CorrectionSession(model, prediction, dataset, spread="s0.png", sample="WT")
    run_to_end(session.prepare())
    n = len(prediction.table)
    first, second = session.least_sure()[:2]
    session.correct(first, model.classes[0])
    assert len(dataset.manifest()) == 1
    session.reject(first)  # corrected first, then found to be no chromosome: its crop goes
    session.reject(second)
    assert len(dataset.manifest()) == 0
    assert session.rejected == [first, second]
    labels = session.table["label"].astype(int).tolist()
    assert first not in labels and second not in labels and len(labels) == n - 2
    assert session.features.shape[0] == n - 2 and first not in session.least_sure()
    table = run_to_end(session.retrain())  # the calls left are called again, rows aligned
    assert len(table) == n - 2 and session.n_corrected == 0
    assert session.model.metadata["training"]["n"] == 18  # nothing learnt from a rejection
    with pytest.raises(ChromosortError, match=f"object {second}"):
        session.reject(second)


def test_spread_mix_counts_the_hand_classes_and_reweights_the_rest():
    from napari_chromosome_sort.classification.known_priors import adapt_priors_known
    from napari_chromosome_sort.classification.priors import adapt_priors

    rng = np.random.default_rng(0)
    proba = rng.dirichlet([6.0, 3.0, 1.0], size=40)  # a spread the model reads as mostly A
    base = np.full(3, 1 / 3)
    # nothing known: the label-free EM of priors.adapt_priors
    free, pi_free = adapt_priors_known(proba, np.full(40, -1), base, pseudo_counts=1.0)
    expected, pi_expected = adapt_priors(proba, base, pseudo_counts=1.0)
    assert np.allclose(pi_free, pi_expected, atol=1e-4) and np.allclose(free, expected, atol=1e-3)
    # every object known: the mix is their hand classes' frequencies
    hand = np.repeat([0, 1, 2], [4, 6, 30])
    _, pi_all = adapt_priors_known(proba, hand, base)
    assert np.allclose(pi_all, [0.1, 0.15, 0.75], atol=1e-6)
    # half the objects known as C: the mix moves towards C, and the rows follow it
    half = np.where(np.arange(40) < 20, 2, -1)
    adapted, pi_half = adapt_priors_known(proba, half, base)
    assert pi_half[2] >= 0.5 > pi_free[2]
    assert adapted[20:, 2].mean() > free[20:, 2].mean()
    assert np.allclose(adapted.sum(1), 1)
    with pytest.raises(ValueError, match="known classes"):
        adapt_priors_known(proba, np.full(40, 3), base)


def test_retrain_with_the_spread_mix_follows_the_corrections(tiny, tmp_path):
    from napari_chromosome_sort.classification.predict import calibration_priors
    from napari_chromosome_sort.classification.priors import reweight
    from napari_chromosome_sort.files.dataset import CropDataset
    from napari_chromosome_sort.progress import run_to_end

    model, prediction = tiny
    session = CorrectionSession(model, prediction, CropDataset(tmp_path / "d"), "s0.png")
    run_to_end(session.prepare())
    walk = session.least_sure()
    target = model.classes[-1]
    for label in walk[: max(2, len(walk) // 2)]:
        session.correct(label, target)
    plain = run_to_end(session.retrain())
    assert session.spread_priors is None  # the default retraining leaves the mix alone
    mixed = run_to_end(session.retrain(spread_mix=True))
    pi = session.spread_priors
    columns = [f"p_{c}" for c in model.classes]
    done = mixed[CORRECTED].to_numpy(bool)
    # at least the corrected share of the objects is the hand class
    assert pi.sum() == pytest.approx(1) and pi[-1] >= done.mean() - 1e-6
    # the posteriors are the plain retraining's re-weighted to the mix, the calls their argmax
    again = reweight(plain[columns].to_numpy(float), calibration_priors(session.model), pi)
    assert np.allclose(mixed[columns].to_numpy(float), again, atol=1e-4)
    best = np.asarray(model.classes)[again.argmax(1)]
    top_two = np.sort(again, axis=1)[:, -2:]
    clear = ~done & (top_two[:, 1] - top_two[:, 0] > 1e-3)  # ties within the tolerance above
    assert clear.sum() >= 0.5 * (~done).sum()
    assert (mixed["class"].to_numpy()[clear] == best[clear]).all()
    assert (mixed["class"].to_numpy()[done] == target).all()
