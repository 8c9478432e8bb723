"""Label-free adaptation of class priors to a target sample.

Saerens, Latinne & Decaestecker (2002), "Adjusting the outputs of a classifier to new a priori
probabilities: a simple procedure", Neural Computation 14:21-41. Given posteriors ``p(c|x)`` of a
classifier calibrated to training priors ``pi_train``, the EM iteration

    w_c(x) = (pi_c / pi_train_c) p(c|x) / sum_c' (pi_c' / pi_train_c') p(c'|x)     (E)
    pi_c   = (sum_x w_c(x) + a_c) / (n + sum_c' a_c')                              (M)

converges to the maximum-likelihood (``a = 0``) or, with pseudo-counts ``a`` (a Dirichlet prior
on ``pi``), the MAP class priors ``pi`` of the unlabelled sample; ``w`` are the posteriors
re-weighted to them. No label of the target sample is used: this is what a cohesion-mutant
readout needs (the class distribution is the quantity being measured, so it must not be imposed
from the wild-type training set).

EM needs *calibrated* posteriors. :func:`fit_calibration` fits bias-corrected temperature
scaling (BCTS; Alexandari, Kundaje & Shrikumar 2020, ICML) on labelled out-of-fold predictions
of the training crops, :func:`calibrate` applies it. :func:`bbse_priors` is the confusion-matrix
estimator of Lipton, Wang & Smola (2018, ICML), kept for comparison.
"""

from __future__ import annotations

import numpy as np

_TINY = 1e-12


def _as_proba(proba) -> np.ndarray:
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"expected (n, k) probabilities, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probabilities contain NaN or infinite values")
    p = np.maximum(p, 0.0)
    return p / np.maximum(p.sum(1, keepdims=True), 1e-300)


def _priors(values, k: int, name: str, floor: float = 1e-6) -> np.ndarray:
    base = np.full(k, 1.0 / k) if values is None else np.asarray(values, dtype=np.float64)
    if base.shape != (k,):
        raise ValueError(f"{name} must have {k} entries, got {base.shape}")
    if not np.all(np.isfinite(base)) or (base < 0).any() or base.sum() <= 0:
        raise ValueError(f"{name} must be non-negative with a positive sum, got {base}")
    base = np.maximum(base, floor)
    return base / base.sum()


def adapt_priors(
    proba: np.ndarray,
    train_priors: np.ndarray | None = None,
    *,
    pseudo_counts: float | np.ndarray = 0.0,
    max_iter: int = 1000,
    tol: float = 1e-6,
    floor: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray]:
    """EM prior adaptation (Saerens et al. 2002), optionally MAP with a Dirichlet prior.

    ``proba``: (n, k) posteriors calibrated to ``train_priors`` (k,; default uniform, i.e. a
    class-balanced classifier). ``pseudo_counts``: Dirichlet pseudo-counts added to the class
    totals in every M step (a scalar is spread evenly over the k classes; 0 = maximum
    likelihood). Returns ``(adapted_proba (n, k), priors (k,))``. With no rows the input is
    returned unchanged with the training priors.
    """
    p = _as_proba(proba)
    n, k = p.shape
    base = _priors(train_priors, k, "train_priors", floor)
    a = np.broadcast_to(np.asarray(pseudo_counts, dtype=np.float64), (k,))
    if np.ndim(pseudo_counts) == 0:
        a = a / k
    if not np.all(np.isfinite(a)) or (a < 0).any():
        raise ValueError(f"pseudo_counts must be finite and >= 0, got {pseudo_counts}")
    if n == 0:
        return p.copy(), base.copy()
    pi = em_priors(p, base, a, max_iter=max_iter, tol=tol, floor=floor)
    return reweight(p, base, pi), pi


def em_priors(
    proba: np.ndarray,
    base: np.ndarray,
    a: np.ndarray,
    known: np.ndarray | None = None,
    *,
    max_iter: int,
    tol: float,
    floor: float,
) -> np.ndarray:
    """The class priors the EM iteration (see the module docstring) converges to from
    ``base``: ``proba`` (n, k) posteriors calibrated to ``base`` (k,, normalised), ``a`` (k,)
    the Dirichlet pseudo-counts, ``known`` (k,) how many further objects of each class are
    known by hand (each counted once for its own class in every M step); every prior at least
    ``floor``."""
    n = len(proba) if known is None else len(proba) + known.sum()
    pi = base.copy()
    for _ in range(max_iter):
        w = proba * (pi / base)
        w /= np.maximum(w.sum(1, keepdims=True), 1e-300)
        counts = w.sum(0) if known is None else w.sum(0) + known
        new = np.maximum((counts + a) / (n + a.sum()), floor)
        new /= new.sum()
        done = np.abs(new - pi).max() < tol
        pi = new
        if done:
            break
    return pi


def reweight(proba: np.ndarray, train_priors, priors) -> np.ndarray:
    """Posteriors calibrated to ``train_priors`` re-weighted to new class ``priors``."""
    p = _as_proba(proba)
    k = p.shape[1]
    w = p * (_priors(priors, k, "priors") / _priors(train_priors, k, "train_priors"))
    return w / np.maximum(w.sum(1, keepdims=True), 1e-300)


def calibrate(proba: np.ndarray, temperature: float = 1.0, bias=None) -> np.ndarray:
    """``softmax(log(proba) / temperature + bias)``: temperature scaling with a class bias
    (BCTS) applied to probabilities (e.g. the mean over test-time views)."""
    p = _as_proba(proba)
    t = float(temperature)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    b = np.zeros(p.shape[1]) if bias is None else np.asarray(bias, dtype=np.float64)
    if b.shape != (p.shape[1],) or not np.all(np.isfinite(b)):
        raise ValueError(f"bias must be {p.shape[1]} finite numbers, got {bias}")
    z = np.log(np.maximum(p, _TINY)) / t + b
    z -= z.max(1, keepdims=True)
    q = np.exp(z)
    return q / q.sum(1, keepdims=True)


def fit_calibration(proba: np.ndarray, y, *, bias: bool = True) -> tuple[float, np.ndarray]:
    """(temperature, bias) minimising the log loss of :func:`calibrate` on labelled
    predictions ``proba`` (n, k) with classes ``y`` (n,) -- out-of-fold predictions of the
    training crops, so that the calibration is not fitted on the data the classifier saw.
    ``bias=False``: temperature only. L-BFGS (scipy) on (log T, bias); bias has mean 0."""
    from scipy.optimize import minimize

    p = _as_proba(proba)
    n, k = p.shape
    y = np.asarray(y, dtype=int)
    if y.shape != (n,) or n == 0 or y.min() < 0 or y.max() >= k:
        raise ValueError(f"y must hold {n} class indices in 0..{k - 1}")
    logp = np.log(np.maximum(p, _TINY))
    onehot = np.eye(k)[y]

    def loss(theta):
        """Mean log loss and its gradient at ``theta`` = (log T, bias without its last class)."""
        inv_t = np.exp(-theta[0])
        b = np.concatenate([theta[1:], [0.0]]) if bias else np.zeros(k)
        z = logp * inv_t + b
        z -= z.max(1, keepdims=True)
        lse = np.log(np.exp(z).sum(1))
        q = np.exp(z - lse[:, None])
        nll = float((lse - (z * onehot).sum(1)).mean())
        g = (q - onehot) / n
        grad = [-(g * logp).sum() * inv_t]
        if bias:
            grad += list(g.sum(0)[:-1])
        return nll, np.asarray(grad)

    theta0 = np.zeros(k if bias else 1)
    theta = minimize(loss, theta0, jac=True, method="L-BFGS-B").x
    b = np.concatenate([theta[1:], [0.0]]) if bias else np.zeros(k)
    return float(np.exp(theta[0])), b - b.mean()


def bbse_priors(proba: np.ndarray, confusion: np.ndarray, train_priors) -> np.ndarray:
    """Black-box shift estimation (Lipton et al. 2018), soft version: solve
    ``confusion @ r = mean(proba)`` for the prior ratios ``r >= 0`` (non-negative least squares)
    and return ``r * train_priors``, normalised. ``confusion[i, j]`` = mean over the labelled
    out-of-fold crops of ``proba_i * [y == j]`` (rows: predicted, columns: true class)."""
    from scipy.optimize import nnls

    p = _as_proba(proba)
    k = p.shape[1]
    base = _priors(train_priors, k, "train_priors")
    c = np.asarray(confusion, dtype=np.float64)
    if c.shape != (k, k) or not np.all(np.isfinite(c)):
        raise ValueError(f"confusion must be a finite ({k}, {k}) matrix, got shape {c.shape}")
    if len(p) == 0:
        return base.copy()
    r, _ = nnls(c, p.mean(0))
    pi = r * base
    return pi / pi.sum() if pi.sum() > 0 else base.copy()


def soft_confusion(proba: np.ndarray, y) -> np.ndarray:
    """``C[i, j]`` = mean of ``proba_i * [y == j]`` (the matrix :func:`bbse_priors` needs)."""
    p = _as_proba(proba)
    y = np.asarray(y, dtype=int)
    if y.shape != (len(p),) or len(p) == 0:
        raise ValueError(f"y must hold {len(p)} class indices")
    return p.T @ np.eye(p.shape[1])[y] / len(p)
