"""predict_crops / predict_spread on synthetic data, and the ``chromosort predict`` CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_chromosome_sort.classification.predict import predict_crops, predict_spread
from napari_chromosome_sort.errors import ChromosortError


@pytest.fixture(scope="module")
def tiny_model():
    """A small classifier trained on synthetic crops (random backbone: only the plumbing)."""
    import torch

    from napari_chromosome_sort.classification.training import TrainingConfig, train_classifier
    from napari_chromosome_sort.progress import run_to_end
    from napari_chromosome_sort.synthetic import make_crop

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    classes = ["A", "B", "C"]
    images, targets = [], []
    for k, cls in enumerate(classes):
        for _ in range(6):
            images.append(make_crop(cls, rng, 48))
            targets.append(k)
    config = TrainingConfig(weights="random", input_size=64, views=1, inner_folds=2, max_iter=50)
    return run_to_end(train_classifier(images, targets, classes, config))


def test_predict_crops_table(tiny_model):
    from napari_chromosome_sort.synthetic import make_crop

    rng = np.random.default_rng(1)
    table = predict_crops(tiny_model, [make_crop("A", rng, 48) for _ in range(3)], tta=False)
    assert list(table.columns) == ["class", "p_A", "p_B", "p_C"] and len(table) == 3
    assert np.allclose(table[["p_A", "p_B", "p_C"]].sum(1), 1.0, atol=1e-5)
    assert set(table["class"]) <= {"A", "B", "C"}
    assert len(predict_crops(tiny_model, [])) == 0


def test_predict_spread_synthetic(tiny_model):
    from napari_chromosome_sort.synthetic import make_spread

    spread = make_spread(
        seed=3, n_chromosomes=8, shape=(256, 256), n_nuclei=1, n_debris=2, n_clusters=0
    )
    result = predict_spread(tiny_model, spread.image, gradcam=True, tta=False)
    table = result.table
    kept = result.segmentation.kept_labels()
    assert len(table) == len(kept) == len(result.crops) > 0
    for column in [
        "label",
        "bbox_y0",
        "bbox_x0",
        "bbox_y1",
        "bbox_x1",
        "class",
        "p_A",
        "p_B",
        "p_C",
    ]:
        assert column in table.columns
    heat = result.gradcam_map
    assert heat.shape == spread.image.shape[:2] and heat.dtype == np.float32
    labels = result.segmentation.labels
    near = np.zeros_like(heat, bool)
    for crop in result.crops:
        g = crop.geometry
        near[max(g.y0, 0) : g.y1, max(g.x0, 0) : g.x1] = True
    assert heat[~near].max() == 0 and heat.max() > 0  # only inside crop windows
    assert heat[labels > 0].max() > 0  # the maps fall on the segmented chromosomes


def test_cli_predict_crops_and_spreads(tiny_model, tmp_path):
    from PIL import Image

    from napari_chromosome_sort.classification.models.model_io import save_model
    from napari_chromosome_sort.cli import main
    from napari_chromosome_sort.synthetic import make_crop_dataset, make_spread

    model_path = save_model(tiny_model, tmp_path / "m.safetensors")
    crops = make_crop_dataset(tmp_path / "crops", n_per_class=1, size=48)
    out = tmp_path / "crops.csv"
    assert main(["predict", str(model_path), str(crops), "--out", str(out), "--no-tta"]) == 0
    table = pd.read_csv(out)
    assert len(table) == 3 and {"source", "class", "p_A", "p_B", "p_C"} <= set(table.columns)

    spread = make_spread(
        seed=5, n_chromosomes=6, shape=(200, 200), n_nuclei=0, n_debris=1, n_clusters=0
    )
    Image.fromarray(spread.image).save(tmp_path / "s1.png")
    out = tmp_path / "spreads.csv"
    cams = tmp_path / "cams"
    code = main(
        [
            "predict",
            str(model_path),
            str(tmp_path / "s1.png"),
            "--spreads",
            "--out",
            str(out),
            "--gradcam",
            str(cams),
            "--no-tta",
        ]
    )
    assert code == 0
    table = pd.read_csv(out)
    assert len(table) > 0
    assert {"source", "label", "bbox_y0", "bbox_x1", "class", "p_C"} <= set(table.columns)
    import tifffile

    heat = tifffile.imread(cams / "s1_gradcam.tif")
    assert heat.shape == spread.image.shape[:2] and heat.dtype == np.float32
    assert (cams / "s1_gradcam.png").exists()
    plain = tmp_path / "plain.csv"
    args = ["predict", str(model_path), str(tmp_path / "s1.png"), "--spreads", "--no-tta"]
    assert main([*args, "--out", str(plain), "--no-adapt-priors"]) == 0
    assert len(pd.read_csv(plain)) == len(table)
    assert main(["predict", str(model_path), str(tmp_path / "nope.png"), "--out", str(out)]) == 2
    ml = tmp_path / "ml.csv"
    assert main([*args, "--out", str(ml), "--prior-pseudo-counts", "0", "--calibrate"]) == 0
    assert len(pd.read_csv(ml)) == len(table)
    assert main([*args, "--out", str(ml), "--prior-pseudo-counts", "-1"]) == 2
    assert main([*args, "--out", str(ml), "--prior-method", "bbse"]) == 0


def test_predict_crops_adapt_priors(tiny_model):
    from napari_chromosome_sort.classification.predict import PriorOptions, calibration_priors
    from napari_chromosome_sort.classification.priors import adapt_priors
    from napari_chromosome_sort.synthetic import make_crop

    rng = np.random.default_rng(2)
    images = [make_crop(c, rng, 48) for c in "AAAAAABC"]
    table = predict_crops(tiny_model, images, tta=False, priors=PriorOptions(adapt=True))
    assert list(table.columns) == ["class", "p_A", "p_B", "p_C"] and len(table) == 8
    assert np.allclose(table[["p_A", "p_B", "p_C"]].sum(1), 1.0, atol=1e-6)
    base = calibration_priors(tiny_model)
    assert base.shape == (3,) and np.isclose(base.sum(), 1.0)
    raw = tiny_model.predict_proba(images, tta=False)
    # default: MAP-EM with one Dirichlet pseudo-count
    expected, _ = adapt_priors(raw, base, pseudo_counts=1.0)
    assert np.allclose(table[["p_A", "p_B", "p_C"]].to_numpy(), expected, atol=1e-6)
    # pseudo-counts 0: the former maximum-likelihood EM
    ml = predict_crops(tiny_model, images, tta=False, priors=PriorOptions(True, 0))
    assert np.allclose(ml[["p_A", "p_B", "p_C"]].to_numpy(), adapt_priors(raw, base)[0], atol=1e-6)
    assert len(predict_crops(tiny_model, [], priors=PriorOptions(adapt=True))) == 0
    with pytest.raises(ChromosortError, match="pseudo-counts"):
        PriorOptions(adapt=True, pseudo_counts=-1)
    # the defaults: as the model records (this one: none, so no adaptation, one pseudo-count),
    # EM, no calibration
    assert PriorOptions() == PriorOptions(None, None, "em", False)
    assert PriorOptions().key()["prior_pseudo_counts"] == 1.0
    assert not PriorOptions().key()["adapt_priors"]
    plain = predict_crops(tiny_model, images, tta=False)
    assert np.allclose(plain[["p_A", "p_B", "p_C"]].to_numpy(), raw, atol=1e-6)


def test_stored_calibration_and_old_models(tiny_model, tmp_path):
    """Training stores a BCTS calibration; ``calibrate=True`` applies it before the prior
    estimate; a model saved without one (older files) loads and predicts as before."""
    import copy

    from napari_chromosome_sort.classification.models.model_io import load_model, save_model
    from napari_chromosome_sort.classification.predict import (
        PriorOptions,
        calibration_priors,
        estimate_priors,
        stored_calibration,
    )
    from napari_chromosome_sort.classification.priors import (
        adapt_priors,
        bbse_priors,
        calibrate,
        reweight,
    )
    from napari_chromosome_sort.synthetic import make_crop

    calibration = tiny_model.metadata["training"]["chosen"]["calibration"]
    assert calibration["method"] == "bcts" and calibration["temperature"] > 0
    assert np.isclose(sum(calibration["priors"]), 1) and len(calibration["confusion"]) == 3
    stored = stored_calibration(tiny_model)
    rng = np.random.default_rng(5)
    images = [make_crop(c, rng, 48) for c in "AABCC"]
    raw = tiny_model.predict_proba(images, tta=False)
    adapted, _ = estimate_priors(tiny_model, raw, PriorOptions(calibrate=True))
    cal = calibrate(raw, stored["temperature"], stored["bias"])
    assert np.allclose(adapted, adapt_priors(cal, stored["priors"], pseudo_counts=1.0)[0])
    calibrated = PriorOptions(adapt=True, calibrate=True)
    table = predict_crops(tiny_model, images, tta=False, priors=calibrated)
    assert np.allclose(table[["p_A", "p_B", "p_C"]].to_numpy(), adapted, atol=1e-6)
    # the calibration survives a save/load round trip
    path = save_model(tiny_model, tmp_path / "new.safetensors")
    assert stored_calibration(load_model(path))["temperature"] == stored["temperature"]
    # an old-format model (no calibration in its metadata) loads, predicts, falls back
    old = copy.deepcopy(tiny_model)
    del old.metadata["training"]["chosen"]["calibration"]
    old = load_model(save_model(old, tmp_path / "old.safetensors"))
    assert stored_calibration(old) is None
    plain = predict_crops(old, images, tta=False, priors=PriorOptions(adapt=True))
    with_flag = predict_crops(old, images, tta=False, priors=calibrated)
    pd.testing.assert_frame_equal(plain, with_flag)
    expected = adapt_priors(raw, calibration_priors(old), pseudo_counts=1.0)[0]
    assert np.allclose(plain[["p_A", "p_B", "p_C"]].to_numpy(), expected, atol=1e-6)
    # BBSE needs the stored confusion matrix: new model works, old one is a clear error
    bbse_options = PriorOptions(adapt=True, method="bbse")
    bbse = predict_crops(tiny_model, images, tta=False, priors=bbse_options)
    pi = bbse_priors(cal, stored["confusion"], stored["priors"])
    expected = reweight(cal, stored["priors"], pi)
    assert np.allclose(bbse[["p_A", "p_B", "p_C"]].to_numpy(), expected, atol=1e-6)
    with pytest.raises(ChromosortError, match="retrain"):
        predict_crops(old, images, priors=bbse_options)
    with pytest.raises(ChromosortError, match="unknown prior method"):
        PriorOptions(adapt=True, method="median")


def test_chromatid_pairs_are_called_separated(tiny_model):
    """Objects built from two separate sister chromatids get class C whatever the network says."""
    from napari_chromosome_sort.synthetic import make_spread

    spread = make_spread(seed=3, n_chromosomes=12, class_weights=(0.0, 0.0, 1.0))
    result = predict_spread(tiny_model, spread.image)
    objects = result.segmentation.objects.set_index("label")
    pairs = objects.loc[result.table["label"], "n_parts"].to_numpy() >= 2
    assert pairs.sum() >= 3  # the synthetic type C chromosomes are grouped chromatid pairs
    assert (result.table.loc[pairs, "class"] == "C").all()
    assert (result.table.loc[pairs, "called_by"] == "chromatid pair").all()
    assert (result.table.loc[~pairs, "called_by"] == "model").all()
    off = predict_spread(tiny_model, spread.image, separated_class=None)
    assert (off.table["called_by"] == "model").all()
    with pytest.raises(ChromosortError):
        predict_spread(tiny_model, spread.image, separated_class="Z")


def _mean_of_views(model, images, views: int) -> np.ndarray:
    """The view average computed by hand: softmax of the torch forward of each dihedral view."""
    import torch

    from napari_chromosome_sort.classification.features import dihedral

    x = model.preprocess(images)
    with torch.no_grad():
        p = [torch.softmax(model(dihedral(x, v)), dim=1) for v in range(views)]
    return (sum(p) / views).numpy()


def test_prediction_views(tiny_model, tmp_path):
    """Prediction averages the model's recorded number of views (4 by default, whatever the
    training views), ``views=`` overrides it, and a saved model keeps it."""
    from napari_chromosome_sort.classification.features import PREDICT_VIEWS
    from napari_chromosome_sort.classification.models.model_io import load_model, save_model
    from napari_chromosome_sort.cli import main
    from napari_chromosome_sort.synthetic import make_crop

    rng = np.random.default_rng(4)
    images = [make_crop(c, rng, 48) for c in "ABCA"]
    assert tiny_model.metadata["prediction_views"] == PREDICT_VIEWS == 4
    assert tiny_model.metadata["training"]["config"]["views"] == 1  # trained on one view
    assert tiny_model.prediction_views == 4
    for views in (1, 2, 4, 8):
        got = tiny_model.predict_proba(images, views=views)
        np.testing.assert_allclose(
            got, _mean_of_views(tiny_model, images, views), atol=1e-4
        )  # ONNX Runtime or torch
    default = tiny_model.predict_proba(images)
    np.testing.assert_allclose(default, tiny_model.predict_proba(images, views=4), atol=1e-6)
    assert not np.allclose(default, tiny_model.predict_proba(images, views=8), atol=1e-6)
    np.testing.assert_allclose(
        tiny_model.predict_proba(images, tta=False), tiny_model.predict_proba(images, views=1)
    )
    table = predict_crops(tiny_model, images, views=2)
    np.testing.assert_allclose(
        table[["p_A", "p_B", "p_C"]].to_numpy(), _mean_of_views(tiny_model, images, 2), atol=1e-4
    )  # ONNX Runtime (a graph cached by an earlier job) or torch
    for bad in (0, 9, 2.5, "4"):
        with pytest.raises(ChromosortError, match="views"):
            tiny_model.predict_proba(images, views=bad)

    tiny_model.metadata["prediction_views"] = 2
    try:
        path = save_model(tiny_model, tmp_path / "m2.safetensors")
    finally:
        tiny_model.metadata["prediction_views"] = 4
    loaded = load_model(path)
    assert loaded.prediction_views == 2
    np.testing.assert_allclose(
        loaded.predict_proba(images), _mean_of_views(loaded, images, 2), atol=1e-4
    )
    loaded.metadata["prediction_views"] = 99  # out of range in a file: the default
    assert loaded.prediction_views == PREDICT_VIEWS

    folder = tmp_path / "crops"
    folder.mkdir()
    from PIL import Image

    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i}.png")
    out = tmp_path / "v.csv"
    assert main(["predict", str(path), str(folder), "--out", str(out), "--views", "8"]) == 0
    table = pd.read_csv(out).sort_values("source")
    expected = _mean_of_views(
        loaded, [np.asarray(Image.open(folder / f"{i}.png")) for i in range(4)], 8
    )
    np.testing.assert_allclose(table[["p_A", "p_B", "p_C"]].to_numpy(), expected, atol=1e-4)
    with pytest.raises(SystemExit):
        main(["predict", str(path), str(folder), "--out", str(out), "--views", "9"])
