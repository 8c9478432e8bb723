"""EM prior adaptation (Saerens et al. 2002) on synthetic posteriors."""

from __future__ import annotations

import numpy as np
import pytest

from napari_chromosome_sort.priors import adapt_priors


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
