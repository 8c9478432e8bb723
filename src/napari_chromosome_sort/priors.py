"""Label-free adaptation of class priors to a target sample.

Saerens, Latinne & Decaestecker (2002), "Adjusting the outputs of a classifier to new a priori
probabilities: a simple procedure", Neural Computation 14:21-41. Given posteriors ``p(c|x)`` of a
classifier calibrated to training priors ``pi_train``, the EM iteration

    w_c(x) = (pi_c / pi_train_c) p(c|x) / sum_c' (pi_c' / pi_train_c') p(c'|x)     (E)
    pi_c   = mean_x w_c(x)                                                         (M)

converges to the maximum-likelihood class priors ``pi`` of the unlabelled sample, and ``w`` are
the posteriors re-weighted to them. No label of the target sample is used: this is what a
cohesion-mutant readout needs (the class distribution is the quantity being measured, so it must
not be imposed from the wild-type training set).
"""

from __future__ import annotations

import numpy as np


def adapt_priors(
    proba: np.ndarray,
    train_priors: np.ndarray | None = None,
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
    floor: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray]:
    """EM prior adaptation (Saerens et al. 2002).

    ``proba``: (n, k) posteriors calibrated to ``train_priors`` (k,; default uniform, i.e. a
    class-balanced classifier). Returns ``(adapted_proba (n, k), priors (k,))``. With no rows the
    input is returned unchanged with the training priors.
    """
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"expected (n, k) probabilities, got shape {p.shape}")
    n, k = p.shape
    base = np.full(k, 1.0 / k) if train_priors is None else np.asarray(train_priors, float)
    if base.shape != (k,):
        raise ValueError(f"train_priors must have {k} entries, got {base.shape}")
    base = np.maximum(base, floor)
    base = base / base.sum()
    if n == 0:
        return p.copy(), base.copy()
    p = np.maximum(p, 0.0)
    p = p / np.maximum(p.sum(1, keepdims=True), 1e-300)
    pi = base.copy()
    w = p
    for _ in range(max_iter):
        w = p * (pi / base)
        w /= np.maximum(w.sum(1, keepdims=True), 1e-300)
        new = np.maximum(w.mean(0), floor)
        new /= new.sum()
        done = np.abs(new - pi).max() < tol
        pi = new
        if done:
            break
    w = p * (pi / base)
    w /= np.maximum(w.sum(1, keepdims=True), 1e-300)
    return w, pi
