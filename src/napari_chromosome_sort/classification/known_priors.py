"""One spread's class mix estimated from all its objects when some of them carry a hand class.

The EM prior adaptation of :func:`.priors.adapt_priors` (Saerens et al. 2002) with some objects'
classes known: a known object counts once for its own class in every M step, the others by their
posteriors re-weighted to the current estimate (the E step), so that the estimate uses what the
hand classes tell of the spread and what the classifier tells of the objects nobody corrected.
This is the maximum (a posteriori) likelihood estimate of the mix when which objects were
corrected depends only on the objects themselves (as in a walk from the least sure call).
"""

from __future__ import annotations

import numpy as np

from napari_chromosome_sort.classification.priors import em_priors, reweight


def adapt_priors_known(
    proba: np.ndarray,
    known: np.ndarray,
    train_priors: np.ndarray,
    *,
    pseudo_counts: float = 0.0,
    max_iter: int = 1000,
    tol: float = 1e-7,
) -> tuple[np.ndarray, np.ndarray]:
    """MAP-EM class priors of one spread whose objects ``known >= 0`` have a hand class.

    ``proba``: (n, k) posteriors calibrated to ``train_priors`` (k,); ``known``: (n,) class
    index of each object set by hand, -1 where the class is unknown; ``pseudo_counts``:
    Dirichlet pseudo-counts spread evenly over the classes (0 = maximum likelihood). Returns
    ``(adapted_proba (n, k), priors (k,))``: every row's posteriors re-weighted to the estimate
    (a known object's own class is not imposed on its row)."""
    p = np.asarray(proba, dtype=np.float64)
    known = np.asarray(known, dtype=int)
    if p.ndim != 2 or known.shape != (len(p),):
        raise ValueError(f"expected (n, k) probabilities and n known classes, got {p.shape}")
    n, k = p.shape
    if (known >= k).any() or (known < -1).any():
        raise ValueError(f"known classes must be -1 or in 0..{k - 1}")
    base = np.asarray(train_priors, dtype=np.float64)
    if base.shape != (k,) or (base <= 0).any() or not np.isfinite(base).all():
        raise ValueError(f"train_priors must be {k} positive numbers, got {train_priors}")
    base = base / base.sum()
    if n == 0:
        return p.copy(), base.copy()
    hand = np.bincount(known[known >= 0], minlength=k).astype(np.float64)
    a = np.full(k, float(pseudo_counts) / k)
    pi = em_priors(p[known < 0], base, a, hand, max_iter=max_iter, tol=tol, floor=1e-6)
    return reweight(p, base, pi), pi
