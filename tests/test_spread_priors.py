"""Each spread's class mix re-estimated at prediction: chosen leave-one-spread-out when a model
is trained beside a reference set (``classification.training.spread_priors``), recorded in the
model, applied by prediction unless the user says otherwise."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napari_chromosome_sort.classification.config import TrainingConfig
from napari_chromosome_sort.classification.predict import (
    PriorOptions,
    calibration_priors,
    predict_crops,
    resolve_priors,
)
from napari_chromosome_sort.classification.priors import adapt_priors
from napari_chromosome_sort.classification.training import spread_priors
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.progress import run_to_end


def _unsure_b_spread(n: int = 40, unsure: int = 10) -> np.ndarray:
    """Posteriors of a spread of ``n`` B objects, ``unsure`` of them read 0.45 A / 0.4 B."""
    p = np.tile([0.05, 0.9, 0.05], (n, 1))
    p[:unsure] = [0.45, 0.40, 0.15]
    return p


def _right(truth: int):
    """(share called right, largest share error) of calls of a spread all of class ``truth``."""
    from napari_chromosome_sort.classification.training.spread_design import spread_score

    return lambda pred: spread_score(np.full(len(pred), truth), pred, 3)


def test_the_pseudo_counts_chosen_by_the_worst_spread():
    base = np.full(3, 1 / 3)
    b_rich = [(_unsure_b_spread(), _right(1)) for _ in range(3)]
    choice, rows = spread_priors.choose_pseudo_counts(b_rich, base)
    assert choice is not None and len(rows) == len(spread_priors.PSEUDO_COUNTS)
    assert [r["pseudo_counts"] for r in rows] == list(spread_priors.PSEUDO_COUNTS)
    # one spread whose unsure objects are truly A: adapting costs it, so its worst wins
    a_truth = (_unsure_b_spread(), lambda pred: (float(np.mean(pred[:10] == 0)), 0.0))
    choice, _ = spread_priors.choose_pseudo_counts([*b_rich[:2], a_truth], base)
    assert choice is None
    # ties go to no adaptation
    assert spread_priors.best_candidate({1.0: [0.5], None: [0.5]}, None) is None
    # by the mean first, a candidate with a worse worst spread can win
    scores = {None: [0.6, 0.6], 1.0: [0.5, 0.9]}
    assert spread_priors.best_candidate(scores, None) is None
    assert spread_priors.best_candidate(scores, None, first="mean") == 1.0
    # the share-error criterion reads the second number
    shares = [(_unsure_b_spread(), lambda pred: (0.5, float(np.mean(pred == 0))))] * 2
    assert spread_priors.choose_pseudo_counts(shares, base, criterion="worst_share_error")[0]


def _spread_features(seed: int = 0):
    """Reference crops (group -1) and own crops of four spreads (groups 0-3) in feature space."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (3, 8))
    y_ref = np.repeat([0, 1, 2], 30)
    y_own = np.repeat([0, 1, 2], [8, 24, 8])
    y = np.r_[y_ref, y_own]
    X = (centres[y] + rng.normal(0, 2, (len(y), 8)))[:, None, :].astype(np.float32)
    reference = np.r_[np.ones(len(y_ref), bool), np.zeros(len(y_own), bool)]
    groups = np.r_[np.full(len(y_ref), -1), np.arange(len(y_own)) % 4]
    return X, y, reference, groups


def test_each_spread_is_called_by_a_head_that_never_saw_it(monkeypatch):
    from napari_chromosome_sort.classification.training import head

    X, y, reference, groups = _spread_features()
    seen = []
    original = head.train_head

    def spy(Xs, ys, *rest):
        seen.append(Xs)
        return (yield from original(Xs, ys, *rest))

    monkeypatch.setattr(head, "train_head", spy)
    config = TrainingConfig(cache_dir=None, pca=0, l2=1.0, views=1, predict_views=1)
    config.prior_correction = False
    info = {"members": [{"feature_set": "all", "pca": 0, "l2": 1.0}]}
    record = run_to_end(
        spread_priors.choose_spread_priors(X, y, ["a", "b", "c"], config, reference, groups, info)
    )
    assert len(seen) == 4
    for g, Xs in zip(range(4), seen, strict=True):
        held = X[groups == g]
        assert len(Xs) == len(X) - len(held)
        assert not (Xs[:, None] == held[None]).all((2, 3)).any()  # none of its crops
    assert isinstance(record["adapt"], bool) and len(record["candidates"]) == 5
    assert record["adapt"] == (record["pseudo_counts"] is not None)
    assert "4 spreads" in record["chosen_by"]
    assert not spread_priors.spread_priors_apply(reference, np.where(groups >= 2, 1, groups))
    assert not spread_priors.spread_priors_apply(None, groups)
    assert spread_priors.spread_priors_apply(reference, groups)


@pytest.fixture
def recorded_model(tiny_model, tmp_path):
    """The tiny model saved with a record: adapt with 0 pseudo-counts."""
    from napari_chromosome_sort.classification.models.model_io import load_model, save_model

    model = load_model(tiny_model)
    model.metadata["prediction_priors"] = {"adapt": True, "pseudo_counts": 0.0}
    return save_model(model, tmp_path / "recorded.safetensors")


def _images():
    from napari_chromosome_sort.synthetic import make_crop

    rng = np.random.default_rng(2)
    return [make_crop(c, rng, 48) for c in "AAAAAABC"]


def test_a_recorded_choice_applies_unless_the_user_says_otherwise(tiny_model, recorded_model):
    from napari_chromosome_sort.classification.models.model_io import load_model

    images, cols = _images(), ["p_A", "p_B", "p_C"]
    model = load_model(recorded_model)  # the record survives saving and loading
    assert model.metadata["prediction_priors"] == {"adapt": True, "pseudo_counts": 0.0}
    raw = model.predict_proba(images, tta=False)
    adapted, _ = adapt_priors(raw, calibration_priors(model), pseudo_counts=0.0)
    default = predict_crops(model, images, tta=False)[cols].to_numpy()
    assert np.allclose(default, adapted, atol=1e-6) and not np.allclose(default, raw, atol=1e-3)
    off = predict_crops(model, images, tta=False, priors=PriorOptions(adapt=False))
    assert np.allclose(off[cols].to_numpy(), raw, atol=1e-6)
    five = predict_crops(model, images, tta=False, priors=PriorOptions(pseudo_counts=5.0))
    expected, _ = adapt_priors(raw, calibration_priors(model), pseudo_counts=5.0)
    assert np.allclose(five[cols].to_numpy(), expected, atol=1e-6)
    # a model without a record: no adaptation unless asked
    old = load_model(tiny_model)
    assert "prediction_priors" not in old.metadata
    plain = predict_crops(old, images, tta=False)[cols].to_numpy()
    assert np.allclose(plain, old.predict_proba(images, tta=False), atol=1e-6)
    assert resolve_priors(old.metadata, PriorOptions()) == PriorOptions(False, 1.0)
    assert resolve_priors(model.metadata, PriorOptions()) == PriorOptions(True, 0.0)
    assert resolve_priors(model.metadata, PriorOptions(adapt=True)) == PriorOptions(True, 0.0)


def test_a_bad_record_is_refused():
    from napari_chromosome_sort.classification.models.model_schema import check_prediction_priors

    check_prediction_priors({"adapt": False})
    for bad in ({"adapt": "yes"}, {"adapt": True}, {"adapt": True, "pseudo_counts": -1}):
        with pytest.raises(ChromosortError, match="prediction priors"):
            check_prediction_priors(bad)


def test_cli_predict_applies_the_record_and_no_adapt_priors_turns_it_off(recorded_model, tmp_path):
    from PIL import Image

    from napari_chromosome_sort.cli import main

    files = []
    for i, image in enumerate(_images()):
        files.append(str(tmp_path / f"crop{i}.png"))
        Image.fromarray(image).save(files[-1])
    out = {name: tmp_path / f"{name}.csv" for name in ("default", "off", "adapt")}
    base = ["predict", str(recorded_model), *files, "--no-tta", "--out"]
    assert main([*base, str(out["default"])]) == 0
    assert main([*base, str(out["off"]), "--no-adapt-priors"]) == 0
    assert main([*base, str(out["adapt"]), "--adapt-priors", "--prior-pseudo-counts", "0"]) == 0
    default, off, adapt = (pd.read_csv(out[n]) for n in ("default", "off", "adapt"))
    assert np.allclose(default["p_A"], adapt["p_A"]) and not np.allclose(default["p_A"], off["p_A"])


def test_the_bundled_model_has_no_record():
    from napari_chromosome_sort._sample_data import bundled_model_path
    from napari_chromosome_sort.classification.models.model_io import read_metadata

    path = bundled_model_path()
    if not path.is_file():
        pytest.skip(f"no bundled model at {path}")
    meta = read_metadata(path)
    assert "prediction_priors" not in meta
    assert resolve_priors(meta, PriorOptions()) == PriorOptions(False, 1.0)


def test_cli_train_beside_a_reference_says_what_prediction_will_do(
    own_and_reference, tmp_path, capsys
):
    from napari_chromosome_sort.classification.models.model_io import read_metadata
    from napari_chromosome_sort.cli import main

    own, ref = own_and_reference
    out = tmp_path / "model.safetensors"
    args = ["train", str(own.root), "--reference", str(ref), "--out", str(out)]
    args += ["--weights", "random", "--input-size", "64", "--cache-dir", "none", "--l2", "1"]
    assert main([*args, "--quiet"]) == 0
    captured = capsys.readouterr()
    record = read_metadata(out)["prediction_priors"]
    assert "3 spreads" in captured.err and "prediction" in captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["prediction_priors"]["adapt"] == record["adapt"]
