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
