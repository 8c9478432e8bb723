"""Head training on cached features, progress/cancel, fine-tuning option, folder training."""

from __future__ import annotations

import numpy as np
import pytest

from napari_chromosome_sort.classification.models.heads import (
    fit_prior_shift,
    head_logits,
    tta_proba,
)
from napari_chromosome_sort.classification.training import (
    TrainingConfig,
    crossvalidate_features,
    scan_folder,
    train_classifier,
    train_from_folder,
    train_head,
)
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.progress import Progress, relay, run_to_end

SMALL = dict(weights="random", input_size=48, views=2, l2_grid=(0.1,), inner_folds=2)


def _features(n_per_class=(60, 30, 6), d=40, views=4, seed=0, sep=1.5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, sep, (len(n_per_class), d))
    y = np.repeat(np.arange(len(n_per_class)), n_per_class)
    X = centres[y][:, None, :] + rng.normal(0, 1, (len(y), views, d))
    return X.astype(np.float32), y


def test_head_learns_cached_features_with_nested_l2_and_prior_correction():
    X, y = _features()
    config = TrainingConfig(l2_grid=(0.01, 0.1, 1.0), inner_folds=3, views=4, pca=16)
    head, info = run_to_end(train_head(X, y, ["a", "b", "c"], config))
    assert [m["l2"] for m in info["members"]][0] in (0.01, 0.1, 1.0) and len(info["inner_cv"]) == 3
    Xt, yt = _features(seed=0)  # same centres, fresh noise
    Xt = Xt + np.random.default_rng(5).normal(0, 0.1, Xt.shape).astype(np.float32)
    acc = (tta_proba(head_logits(head, Xt)).argmax(1) == yt).mean()
    assert acc > 0.9


def test_feature_sets_select_pooled_columns():
    from napari_chromosome_sort.classification.models.backbones import FEATURE_SETS, feature_columns

    sizes = {name: feature_columns("squeezenet1_1", name).size for name in FEATURE_SETS}
    assert sizes == {"all": 4352, "all_avg": 2176, "last": 1024, "last_avg": 512}
    last_avg = feature_columns("squeezenet1_1", "last_avg")
    assert last_avg[0] == 4352 - 1024 and np.all(np.diff(last_avg) == 1)  # avg of Fire 12
    assert set(last_avg) <= set(feature_columns("squeezenet1_1", "all_avg"))
    with pytest.raises(ChromosortError, match="unknown feature set"):
        feature_columns("squeezenet1_1", "middle")


def test_preprocessing_candidates_follow_fixed_fields():
    # plain crops: 224 px padded and stretched
    assert len(TrainingConfig(appearance="plain").preprocessings()) == 2
    # canonical crops are square, so "stretch" would repeat "pad" at the same size
    assert {p.geometry for p in TrainingConfig().preprocessings()} == {"pad"}
    only = TrainingConfig(geometry="stretch").preprocessings()
    assert [(p.size, p.geometry) for p in only] == [(224, "stretch")]
    assert [p.size for p in TrainingConfig(input_size=48).preprocessings()] == [48]


def test_inner_cv_chooses_the_informative_preprocessing_and_feature_set():
    from napari_chromosome_sort.classification.features import Preprocessing
    from napari_chromosome_sort.classification.models.backbones import feature_columns

    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], [40, 30, 20])
    noise = rng.normal(0, 1, (len(y), 2, 4352)).astype(np.float32)
    informative = noise.copy()
    last_avg = feature_columns("squeezenet1_1", "last_avg")
    informative[:, :, last_avg[:20]] += 3.0 * np.eye(3, 20)[y][:, None, :]  # class signal
    good, bad = Preprocessing(size=64), Preprocessing(size=32)
    config = TrainingConfig(l2_grid=(0.1,), pca_grid=(0,), inner_folds=3, views=2)
    head, info = run_to_end(train_head({bad: noise, good: informative}, y, "abc", config))
    (member,) = info["members"]
    assert info["preprocessing"] == good and member["feature_set"] in ("last_avg", "last")
    assert len(info["inner_cv"]) == 2 * 4  # every (preprocessing, feature set) was scored
    weight = head.net.weight.detach().numpy()
    unused = np.setdiff1d(np.arange(4352), feature_columns("squeezenet1_1", member["feature_set"]))
    assert np.all(weight[:, unused] == 0)  # the chosen design is one Linear over all features
    assert (tta_proba(head_logits(head, informative)).argmax(1) == y).mean() > 0.9

    config.combine = "ensemble"  # every feature set of the chosen preprocessing, averaged
    head, info = run_to_end(train_head({bad: noise, good: informative}, y, "abc", config))
    assert info["preprocessing"] == good and len(info["members"]) == 4
    assert (tta_proba(head_logits(head, informative)).argmax(1) == y).mean() > 0.9


def test_inner_cv_repeats_score_every_crop_once_per_repeat():
    X, y = _features(sep=1.0)
    config = TrainingConfig(l2_grid=(0.1, 1.0), inner_folds=3, views=4, pca=8, inner_repeats=2)
    reports = []
    head, info = run_to_end(train_head(X, y, ["a", "b", "c"], config), reports.append)
    assert reports[-1].total == 2 * 3 * 2 + 1  # L2 values x folds x repeats, then the final fit
    config.inner_repeats = 1
    single = run_to_end(train_head(X, y, ["a", "b", "c"], config))[1]
    # a second partition changes the inner scores, never their meaning (accuracy in [0, 1])
    assert [c["l2"] for c in info["inner_cv"]] == [c["l2"] for c in single["inner_cv"]]
    assert all(0 <= c["accuracy"] <= 1 for c in info["inner_cv"])
    assert info["inner_cv"] != single["inner_cv"]
    assert (tta_proba(head_logits(head, X)).argmax(1) == y).mean() > 0.8


def test_refit_keeps_the_validated_l2_strength_per_crop():
    X, y = _features(sep=1.0)
    config = TrainingConfig(l2_grid=(1.0,), inner_folds=3, views=4, pca=8)
    head, info = run_to_end(train_head(X, y, ["a", "b", "c"], config))
    assert info["l2_refit_factor"] == pytest.approx(2 / 3, abs=0.01)  # 3 inner folds
    config.rescale_l2 = False
    plain, info = run_to_end(train_head(X, y, ["a", "b", "c"], config))
    assert info["l2_refit_factor"] == 1.0
    # weaker L2 on more crops: larger weights, same design
    norm = lambda h: float((h.net.weight.detach() ** 2).sum())  # noqa: E731
    assert norm(head) > norm(plain)


def test_prior_shift_matches_class_frequencies():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1, (200, 2, 3)).astype(np.float32)
    y = np.repeat([0, 1, 2], [140, 50, 10])
    b = fit_prior_shift(logits, y, 3)
    mean_p = tta_proba(logits + b).mean(0)
    assert np.allclose(mean_p, [0.7, 0.25, 0.05], atol=0.01)


def test_crossvalidation_on_cached_features_is_nested_and_reports_spread():
    X, y = _features(sep=1.0)
    config = TrainingConfig(l2_grid=(0.1, 1.0), inner_folds=2, views=4, pca=0)
    r = run_to_end(crossvalidate_features(X, y, ["a", "b", "c"], config, folds=3))
    assert {"n", "accuracy", "kappa", "classes", "confusion", "per_class", "distribution"} <= set(r)
    assert len(r["folds"]) == 3 and r["accuracy"] > 0.8 and "accuracy_sd" in r


def _crops(n, seed):
    from napari_chromosome_sort.synthetic import make_crop

    rng = np.random.default_rng(seed)
    return [make_crop(c, rng, 48) for c in "ABC" for _ in range(n)], np.repeat([0, 1, 2], n)


def test_training_is_a_cancellable_generator():
    images, y = _crops(4, 0)
    steps = train_classifier(images, y, ["A", "B", "C"], TrainingConfig(**SMALL))
    first = next(steps)
    assert isinstance(first, Progress) and first.total >= 0
    steps.close()  # stopping between steps is just closing the generator


def test_steps_return_their_result_through_relay_run_to_end_and_with_tqdm():
    from napari_chromosome_sort.progress import with_tqdm

    closed = []

    def inner():
        try:
            yield Progress(1, 2, "half")
            yield Progress(2, 2, "done")
        finally:
            closed.append(True)
        return "value"

    def outer():
        value = yield from relay(inner(), lambda r: Progress(r.step, r.total, f"in: {r.message}"))
        yield Progress(1, 1, "outer")
        return value.upper()

    reports = []
    assert run_to_end(outer(), reports.append) == "VALUE"
    assert [r.message for r in reports] == ["in: half", "in: done", "outer"]
    assert with_tqdm(outer(), disable=True) == "VALUE"
    # cancelling the outer step (closing it) closes the relayed inner one
    closed.clear()
    steps = outer()
    next(steps)
    steps.close()
    assert closed == [True]


def test_bad_training_input():
    images, y = _crops(2, 0)
    with pytest.raises(ChromosortError, match="no training crops"):
        run_to_end(train_classifier(images, y, ["A", "B", "C", "D"], TrainingConfig(**SMALL)))
    with pytest.raises(ChromosortError):
        run_to_end(train_classifier(images[:3], y, ["A", "B", "C"], TrainingConfig(**SMALL)))


def test_finetune_option_and_metadata():
    images, y = _crops(5, 1)
    config = TrainingConfig(**SMALL, finetune_blocks=1, finetune_epochs=1)
    model = run_to_end(train_classifier(images, y, ["A", "B", "C"], config))
    assert all(not p.requires_grad for p in model.backbone.parameters())
    meta = model.metadata
    assert meta["training"]["counts"] == {"A": 5, "B": 5, "C": 5}
    assert meta["training"]["config"]["finetune_blocks"] == 1
    assert "blocks tuned" in meta["weights_source"]  # never read as the untuned features
    assert "inner_cv_accuracy" in meta["metrics"]
    assert meta["preprocessing"]["appearance"] == "canonical"
    assert model.predict_proba(images[:2], tta=False).shape == (2, 3)


def test_train_from_folder(tmp_path):
    from napari_chromosome_sort.synthetic import make_crop_dataset

    root = make_crop_dataset(tmp_path / "crops", n_per_class=4, seed=0, size=48)
    paths, targets, classes = scan_folder(root)
    assert classes == ["A", "B", "C"] and len(paths) == 12
    model = run_to_end(train_from_folder(root, TrainingConfig(**SMALL)))
    assert model.metadata["training"]["dataset"].endswith("crops")


def test_feature_cache_on_by_default_sliced_bounded_and_off(tmp_path, monkeypatch):
    """Training caches features in the user cache's features/ folder by default; fewer views
    are the first views of a cached crop (no backbone run); the folder is pruned oldest first;
    cache_dir "none" keeps them in memory only."""
    import os
    import shutil

    import torch

    from napari_chromosome_sort.classification import features as F
    from napari_chromosome_sort.classification.models.backbones import build_backbone
    from napari_chromosome_sort.classification.models.fast_inference import CACHE_ENV
    from napari_chromosome_sort.synthetic import make_crop_dataset

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "user"))
    assert TrainingConfig().cache_dir == "auto"
    assert F.feature_cache_dir("auto") == tmp_path / "user" / "features"
    assert F.feature_cache_dir("none") is None and F.feature_cache_dir(None) is None
    root = make_crop_dataset(tmp_path / "crops", n_per_class=3, seed=1, size=48)
    F.clear_memory_cache()
    run_to_end(train_from_folder(root, TrainingConfig(**{**SMALL, "views": 8})))
    files = list((tmp_path / "user" / "features").glob("*/*.npy"))
    assert len(files) == 9 and all(np.load(f).shape[0] == 8 for f in files)

    paths, _, _ = scan_folder(root)
    torch.manual_seed(0)
    backbone = build_backbone("squeezenet1_1", "random")
    prep = F.Preprocessing(size=48)
    eight = run_to_end(F.extract_features(backbone, paths, prep, views=8, cache_dir="auto"))
    calls = []
    backbone.register_forward_hook(lambda *a: calls.append(1))
    F.clear_memory_cache()  # from disk, not memory
    monkeypatch.setenv("CHROMOSORT_ONNX", "0")  # every forward goes through the hook
    four = run_to_end(F.extract_features(backbone, paths, prep, views=4, cache_dir="auto"))
    assert not calls and four.shape[1] == 4
    np.testing.assert_array_equal(four, eight[:, :4])
    np.testing.assert_allclose(eight[:, 0], backbone(F.preprocess(paths, prep)).detach(), atol=1e-4)

    # memory only: nothing written
    F.clear_memory_cache()
    off = tmp_path / "off"
    monkeypatch.setenv(CACHE_ENV, str(off))
    run_to_end(F.extract_features(backbone, paths[:2], prep, views=1, cache_dir="none"))
    assert not off.exists()
    # size bound: the least recently used files go first
    folder = tmp_path / "user" / "features"
    assert list(folder.glob("inner-cv/*.npz"))  # the training's inner-CV result
    shutil.rmtree(folder / "inner-cv")  # safe to delete
    by_age = sorted(folder.glob("*/*.npy"), key=lambda p: p.stat().st_mtime)
    for age, path in enumerate(by_age):
        os.utime(path, (1000 + age, 1000 + age))
    size = by_age[0].stat().st_size
    assert F.prune_cache(folder, limit=size * (len(by_age) - 2)) == 2
    assert not by_age[0].exists() and not by_age[1].exists() and by_age[2].exists()
    F.clear_memory_cache()


def test_training_again_on_the_same_crops_reuses_the_inner_cv(tmp_path, monkeypatch):
    """The inner-CV result and the final head are stored beside the cached features: the same
    crops and settings give the same head without fitting; with the final head's file gone only
    the chosen design is fitted again; other targets or no cache search again."""
    from napari_chromosome_sort.classification.training import head, search

    X, y = _features(n_per_class=(20, 12, 6), d=12, views=2)
    fits = []
    real = search.fit_linear
    for module in (search, head):  # the inner fits and the final one
        monkeypatch.setattr(module, "fit_linear", lambda *a, **k: fits.append(1) or real(*a, **k))
    config = TrainingConfig(cache_dir=str(tmp_path / "cache"), l2_grid=(0.1, 1.0), inner_folds=2)
    head, info = run_to_end(train_head(X, y, ["a", "b", "c"], config))
    searched = len(fits)
    assert searched > 2 and len(list((tmp_path / "cache" / "inner-cv").glob("*.npz"))) == 2
    fits.clear()
    again, info2 = run_to_end(train_head(X, y, ["a", "b", "c"], config))
    assert not fits  # the stored search and final head
    assert info2 == info
    for name, tensor in head.state_dict().items():
        assert np.array_equal(tensor.numpy(), again.state_dict()[name].numpy()), name
    for path in (tmp_path / "cache" / "inner-cv").glob("*-head.npz"):
        path.unlink()
    fits.clear()
    refit, info3 = run_to_end(train_head(X, y, ["a", "b", "c"], config))
    # only the chosen design's inner fits on every view (its out-of-fold logits) and the final one
    assert len(fits) == config.inner_folds + 1 and info3 == info
    for name, tensor in head.state_dict().items():
        assert np.array_equal(tensor.numpy(), refit.state_dict()[name].numpy()), name
    fits.clear()
    run_to_end(train_head(X, y[::-1].copy(), ["a", "b", "c"], config))
    assert len(fits) == searched  # other targets: searched again
    fits.clear()
    off = TrainingConfig(cache_dir="none", l2_grid=(0.1, 1.0), inner_folds=2)
    run_to_end(train_head(X, y, ["a", "b", "c"], off))
    run_to_end(train_head(X, y, ["a", "b", "c"], off))
    assert len(fits) == 2 * searched
