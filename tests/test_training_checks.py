"""Warnings about a trained model, from its recorded counts and cross-validated agreement."""

from __future__ import annotations

from napari_chromosome_sort.classification.training.checks import training_warnings


def test_few_crops_and_near_chance_are_named_with_their_numbers():
    meta = {
        "training": {"counts": {"A": 5, "B": 5, "C": 5}},
        "metrics": {"accuracy": 0.47, "kappa": 0.20, "n": 15},
    }
    few, chance = training_warnings(meta)
    assert "A (5), B (5), C (5)" in few and "45 more" in few
    assert "47%" in chance and "κ 0.20" in chance and "33% for always calling A" in chance


def test_a_sound_model_gets_no_warning():
    meta = {
        "training": {"counts": {"A": 416, "B": 204, "C": 32}},
        "metrics": {"accuracy": 0.79, "kappa": 0.55, "n": 652},
    }
    assert training_warnings(meta) == []


def test_agreement_no_better_than_the_commonest_class_is_near_chance():
    # 90% agreement looks high, but 9 crops of 10 are A: always calling A does as well
    meta = {
        "training": {"counts": {"A": 180, "B": 20}},
        "metrics": {"inner_cv_accuracy": 0.9},
    }
    (warning,) = training_warnings(meta)
    assert warning.startswith("Near chance: inner cross-validation agreement 90%")


def _features(per_class: int, separation: float, seed: int = 0):
    """Three Gaussian classes in 32 dimensions, ``separation`` apart along a few axes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    means = rng.normal(0, 1, (3, 32)) * separation
    y = np.repeat(np.arange(3), per_class)
    return means[y] + rng.normal(0, 1, (len(y), 32)), y


def _curve(features, y):
    from napari_chromosome_sort.classification.training.checks import learning_curve
    from napari_chromosome_sort.progress import run_to_end

    return run_to_end(learning_curve(features, y, folds=5))


def test_a_rising_learning_curve_says_about_how_many_more_crops_per_class():
    """Issue 31: a model trained from 5 crops per class was offered without a word; training
    now says how many more crops would help, from the measured learning curve, and the number
    holds: with that many crops of the same kind, agreement reaches about the target."""
    from napari_chromosome_sort.classification.training.checks import (
        MAX_EXTRAPOLATION,
        TARGET_KAPPA,
        crops_per_class_for,
    )

    features, y = _features(per_class=25, separation=0.3)
    curve = _curve(features, y)
    sizes = sorted({p["per_class"] for p in curve})
    assert sizes[0] == 2 and sizes[-1] == 20 and len(curve) == 5 * len(sizes)
    needed = crops_per_class_for(curve)
    assert needed is not None and sizes[-1] < needed <= MAX_EXTRAPOLATION * sizes[-1]
    meta = {
        "training": {"counts": {"A": 25, "B": 25, "C": 25}, "learning_curve": curve},
        "metrics": {"accuracy": 0.6, "kappa": 0.35, "n": 75},
    }
    chance, advice = training_warnings(meta)
    assert chance.startswith("Near chance") and advice.startswith("About ")
    more = int(advice.split("About ")[1].split(" more")[0])
    assert more % 5 == 0 and needed - 25 <= more < needed - 25 + 5  # rounded up to 5
    assert f"κ {TARGET_KAPPA}" in advice and "with 20 crops per class" in advice  # its numbers
    big_features, big_y = _features(per_class=(25 + more) * 5 // 4 + 1, separation=0.3)
    big = _curve(big_features, big_y)
    top = max(p["per_class"] for p in big)
    reached = [p["kappa"] for p in big if p["per_class"] == top]
    assert top >= 25 + more and sum(reached) / len(reached) >= TARGET_KAPPA - 0.1


def test_a_slow_learning_curve_gives_only_a_lower_bound():
    features, y = _features(per_class=25, separation=0.2)
    meta = {
        "training": {"counts": {"A": 25, "B": 25, "C": 25}, "learning_curve": _curve(features, y)},
        "metrics": {"accuracy": 0.5, "kappa": 0.3, "n": 75},
    }
    advice = training_warnings(meta)[-1]
    assert advice.startswith("Agreement still rises") and "at least 15 more per class" in advice


def test_a_flat_learning_curve_does_not_guess_a_number():
    import numpy as np

    from napari_chromosome_sort.classification.training.checks import crops_per_class_for

    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 15)
    curve = _curve(rng.normal(size=(45, 32)), y)  # labels unrelated to the features
    assert crops_per_class_for(curve) is None
    meta = {
        "training": {"counts": {"A": 15, "B": 15, "C": 15}, "learning_curve": curve},
        "metrics": {"accuracy": 0.33, "kappa": 0.0, "n": 45},
    }
    advice = training_warnings(meta)[-1]
    assert advice.startswith("How many more crops would help cannot be read")
    assert "About" not in advice


def test_no_curve_when_a_class_has_under_three_crops():
    import numpy as np

    y = np.array([0, 0, 1, 1, 1, 2, 2, 2])
    assert _curve(np.zeros((8, 4)), y) == []
