"""EM prior adaptation (Saerens et al. 2002) on synthetic posteriors."""

from __future__ import annotations

import numpy as np
import pytest

from napari_chromosome_sort.classification.priors import (
    adapt_priors,
    bbse_priors,
    calibrate,
    fit_calibration,
    reweight,
    soft_confusion,
)


def _sample(priors, n, rng, means, sd=1.0):
    """1-D Gaussian classes; posteriors of the Bayes classifier calibrated to uniform priors."""
    y = rng.choice(len(priors), size=n, p=priors)
    x = rng.normal(np.asarray(means)[y], sd)
    log_lik = -0.5 * ((x[:, None] - np.asarray(means)[None]) / sd) ** 2
    p = np.exp(log_lik - log_lik.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True), y


def test_recovers_shifted_prior():
    rng = np.random.default_rng(0)
    true = np.array([0.15, 0.15, 0.70])
    proba, y = _sample(true, 20000, rng, means=[0.0, 1.5, 3.0])
    # naive: mean of uniform-calibrated posteriors is biased toward uniform
    assert abs(proba.mean(0)[2] - true[2]) > 0.1
    adapted, priors = adapt_priors(proba, np.full(3, 1 / 3))
    assert np.allclose(priors, true, atol=0.02)
    assert np.allclose(adapted.sum(1), 1.0)
    # the adapted posteriors are more accurate on the shifted sample
    assert (adapted.argmax(1) == y).mean() > (proba.argmax(1) == y).mean()


def test_train_priors_and_identity():
    rng = np.random.default_rng(1)
    train = np.array([0.64, 0.31, 0.05])
    proba, _ = _sample(train, 20000, rng, means=[0.0, 1.5, 3.0])
    # re-calibrate the uniform-prior posteriors to the training priors
    cal = proba * train
    cal /= cal.sum(1, keepdims=True)
    adapted, priors = adapt_priors(cal, train)
    assert np.allclose(priors, train, atol=0.02)  # a sample like training: ~unchanged
    assert np.abs(adapted - cal).max() < 0.1


def test_edge_cases():
    adapted, priors = adapt_priors(np.zeros((0, 3)))
    assert adapted.shape == (0, 3) and np.allclose(priors, 1 / 3)
    with pytest.raises(ValueError):
        adapt_priors(np.ones(3))
    with pytest.raises(ValueError):
        adapt_priors(np.ones((2, 3)) / 3, [0.5, 0.5])


def _error(estimate, y, k=3):
    return np.abs(estimate - np.bincount(y, minlength=k) / len(y)).mean()


def test_map_em_does_not_collapse_small_samples():
    """Small samples, weak classifier: ML-EM often drives a present class to ~0 (the collapse
    seen on the DDX11 spreads); a weak Dirichlet prior (1 pseudo-count) keeps it and, over many
    shifted samples, estimates the class fractions better."""
    rng = np.random.default_rng(3)
    collapsed = {0.0: 0, 1.0: 0}
    errors = {0.0: [], 1.0: []}
    for _ in range(300):
        true = rng.dirichlet(np.ones(3))
        proba, y = _sample(true, int(rng.integers(40, 101)), rng, means=[0.0, 1.0, 2.0])
        for a in collapsed:
            _, priors = adapt_priors(proba, np.full(3, 1 / 3), pseudo_counts=a)
            present = np.bincount(y, minlength=3) / len(y) >= 0.1
            collapsed[a] += bool((present & (priors < 0.02)).any())
            errors[a].append(_error(priors, y))
    assert collapsed[1.0] < collapsed[0.0] / 3 and collapsed[0.0] >= 10
    assert np.mean(errors[1.0]) < np.mean(errors[0.0])
    # pseudo-counts spread evenly: a scalar equals the explicit per-class vector
    proba, _ = _sample([0.2, 0.3, 0.5], 50, rng, means=[0.0, 1.0, 2.0])
    a1 = adapt_priors(proba, pseudo_counts=3.0)[1]
    a2 = adapt_priors(proba, pseudo_counts=np.ones(3))[1]
    assert np.allclose(a1, a2)
    with pytest.raises(ValueError, match="pseudo_counts"):
        adapt_priors(proba, pseudo_counts=-1.0)


def test_calibration_repairs_overconfident_posteriors_for_em():
    """Posteriors sharpened by a temperature 0.5 (over-confident): BCTS fitted on labelled
    source predictions recovers T ~ 2, and EM on the re-calibrated target posteriors estimates
    the shifted priors better than EM on the raw ones."""
    rng = np.random.default_rng(4)
    means = [0.0, 1.0, 2.0]

    def sharpen(p):
        q = p**2
        return q / q.sum(1, keepdims=True)

    source, ys = _sample(np.full(3, 1 / 3), 6000, rng, means)
    temperature, bias = fit_calibration(sharpen(source), ys)
    assert temperature == pytest.approx(2.0, rel=0.1) and np.abs(bias).max() < 0.1
    assert fit_calibration(sharpen(source), ys, bias=False)[1].tolist() == [0, 0, 0]
    true = np.array([0.1, 0.15, 0.75])
    target, yt = _sample(true, 3000, rng, means)
    raw = adapt_priors(sharpen(target))[1]
    fixed = adapt_priors(calibrate(sharpen(target), temperature, bias))[1]
    assert _error(fixed, yt) < 0.7 * _error(raw, yt)
    assert np.allclose(calibrate(target, 1.0, np.zeros(3)), target)


def test_bbse_and_reweight():
    rng = np.random.default_rng(5)
    means = [0.0, 1.5, 3.0]
    source, ys = _sample(np.full(3, 1 / 3), 8000, rng, means)
    true = np.array([0.6, 0.3, 0.1])
    target, _ = _sample(true, 8000, rng, means)
    pi = bbse_priors(target, soft_confusion(source, ys), np.full(3, 1 / 3))
    assert np.allclose(pi, true, atol=0.03)
    w = reweight(target, np.full(3, 1 / 3), pi)
    assert np.allclose(w.sum(1), 1) and np.allclose(w.mean(0), pi, atol=0.05)


def test_bad_inputs_are_clear_errors():
    p = np.full((4, 3), 1 / 3)
    with pytest.raises(ValueError, match="NaN"):
        adapt_priors(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="temperature"):
        calibrate(p, 0.0)
    with pytest.raises(ValueError, match="bias"):
        calibrate(p, 1.0, [0.0, 1.0])
    with pytest.raises(ValueError, match="class indices"):
        fit_calibration(p, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="confusion"):
        bbse_priors(p, np.eye(2), None)
    with pytest.raises(ValueError, match="train_priors"):
        adapt_priors(p, [-1.0, 1.0, 1.0])
