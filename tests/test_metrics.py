"""Metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from napari_chromosome_sort.analysis.metrics import crossvalidate, evaluate, learning_curve
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.progress import Progress, run_to_end


def test_evaluate_by_hand():
    y_true = ["a", "a", "a", "a", "b", "b", "c", "c"]
    y_pred = ["a", "a", "a", "b", "b", "a", "c", "b"]
    r = evaluate(y_true, y_pred, ["a", "b", "c"])
    assert r["n"] == 8 and r["accuracy"] == pytest.approx(5 / 8)
    assert r["confusion"]["counts"] == [[3, 1, 0], [1, 1, 0], [0, 1, 1]]
    assert r["confusion"]["row_percent"][0] == [75.0, 25.0, 0.0]
    # kappa: po = 5/8; pe = (4*4 + 2*3 + 2*1) / 64 = 24/64
    assert r["kappa"] == pytest.approx((5 / 8 - 24 / 64) / (1 - 24 / 64))
    assert r["per_class"]["a"]["precision"] == pytest.approx(3 / 4)
    assert r["per_class"]["b"]["precision"] == pytest.approx(1 / 3)
    assert r["per_class"]["c"]["recall"] == pytest.approx(1 / 2)
    assert r["per_class"]["c"]["f1"] == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert r["per_class"]["a"]["support"] == 4
    assert r["distribution"]["true"] == {"a": 0.5, "b": 0.25, "c": 0.25}
    assert r["distribution"]["pred"] == {"a": 0.5, "b": 0.375, "c": 0.125}
    assert evaluate([0, 1, 2], [0, 1, 2], ["a", "b", "c"])["kappa"] == pytest.approx(1.0)


def test_evaluate_rejects_bad_input():
    with pytest.raises(ChromosortError):
        evaluate(["a", "x"], ["a", "a"], ["a", "b"])
    with pytest.raises(ChromosortError):
        evaluate([0, 1], [0], ["a", "b"])


def _oracle(targets, wrong_every=0):
    def fit_predict(train, test):
        yield Progress(0, 1, "fit")
        pred = targets[test].copy()
        if wrong_every:
            pred[::wrong_every] = (pred[::wrong_every] + 1) % 3
        return pred

    return fit_predict


def test_crossvalidate_repeats_and_spread():
    targets = np.repeat([0, 1, 2], [20, 10, 5])
    r = run_to_end(crossvalidate(_oracle(targets), targets, ["a", "b", "c"], folds=5, repeats=2))
    assert r["accuracy"] == 1.0 and r["accuracy_sd"] == 0.0 and len(r["folds"]) == 10
    assert r["n"] == 35
    r = run_to_end(crossvalidate(_oracle(targets, 2), targets, ["a", "b", "c"], folds=5))
    assert 0.4 < r["accuracy"] < 0.6
    with pytest.raises(ChromosortError, match="too few"):
        list(crossvalidate(_oracle(targets), targets, ["a", "b", "c"], folds=6))


def test_learning_curve_sizes():
    targets = np.repeat([0, 1, 2], [20, 10, 5])
    curve = run_to_end(
        learning_curve(_oracle(targets), targets, ["a", "b", "c"], per_class=(2, 100), folds=5)
    )
    assert [c["per_class"] for c in curve] == [2, 100]
    assert curve[0]["n_train"] == 6 and curve[1]["n_train"] == 28
    assert all(c["accuracy"] == 1.0 for c in curve)
