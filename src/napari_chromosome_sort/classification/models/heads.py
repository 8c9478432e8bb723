"""Heads on cached backbone features: class-balanced L2 logistic regression (scipy's L-BFGS on
the analytic gradient, on PCA components) or a small MLP (Adam, early stopping), test-time
averaging over the dihedral views, and the prior shift and calibration fitted on out-of-fold
predictions."""

from __future__ import annotations

import numpy as np
import torch

from napari_chromosome_sort.classification.config import TrainingConfig
from napari_chromosome_sort.classification.models.classifier import PooledHead
from napari_chromosome_sort.classification.priors import calibrate, fit_calibration, soft_confusion


def balance_weights(y: np.ndarray, k: int, balance: bool) -> np.ndarray:
    """Per-class loss weights (k,) float64: n / (k * count) if ``balance`` (0 for absent
    classes), else ones."""
    if not balance:
        return np.ones(k)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    return np.where(counts > 0, len(y) / (k * np.maximum(counts, 1)), 0.0)


def class_weights(y: np.ndarray, k: int, balance: bool):
    """:func:`balance_weights` as a float32 torch tensor."""
    return torch.tensor(balance_weights(y, k, balance), dtype=torch.float32)


def _standardise(head, X: np.ndarray) -> None:
    flat = X.reshape(-1, X.shape[-1])
    mu = flat.mean(0)
    sd = flat.std(0)
    sd = np.where(sd > 1e-6, sd, 1.0)
    head.mu.copy_(torch.from_numpy(mu.astype(np.float32)))
    head.sigma.copy_(torch.from_numpy(sd.astype(np.float32)))


def fit_head(X: np.ndarray, y: np.ndarray, k: int, config: TrainingConfig, l2: float, init=None):
    """Train a ``PooledHead`` on cached features X (n, views, D) with targets y (n,).

    ``init``: a head fitted on the same crops (e.g. with another L2) to warm-start from.
    """
    torch.manual_seed(config.seed)
    n, v, d = X.shape
    head = PooledHead(d, k, hidden=config.hidden, dropout=config.dropout)
    _standardise(head, X)
    weights = class_weights(y, k, config.class_balance)
    xs = torch.from_numpy(X.reshape(n * v, d))
    ys = torch.from_numpy(np.repeat(y, v)).long()
    sw = weights[ys]
    sw = sw / sw.mean()

    if config.hidden == 0 and config.dropout == 0:  # linear: fit_linear on standardised X
        z = (X - head.mu.numpy()) / head.sigma.numpy()
        start = None
        if init is not None:
            start = (init.net.weight.detach().numpy(), init.net.bias.detach().numpy())
        w, b = fit_linear(z, y, k, config, l2, start)
        with torch.no_grad():
            head.net.weight.copy_(torch.from_numpy(w.astype(np.float32)))
            head.net.bias.copy_(torch.from_numpy(b.astype(np.float32)))
        head.eval()
        return head

    # MLP / dropout head: Adam, validation split by crop, early stopping on validation loss
    rng = np.random.default_rng(config.seed)
    val_mask = validation_mask(y, k, config.val_fraction, rng)
    tr_rows = np.flatnonzero(np.repeat(~val_mask, v))
    va_rows = np.flatnonzero(np.repeat(val_mask, v))
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=l2)
    best, best_state, bad = np.inf, None, 0
    for _epoch in range(config.epochs):
        head.train()
        order = rng.permutation(tr_rows)
        for s in range(0, len(order), config.batch_size):
            b = torch.from_numpy(order[s : s + config.batch_size])
            opt.zero_grad()
            loss = (
                torch.nn.functional.cross_entropy(head(xs[b]), ys[b], reduction="none") * sw[b]
            ).mean()
            loss.backward()
            opt.step()
        if len(va_rows) == 0:
            continue
        head.eval()
        with torch.no_grad():
            vb = torch.from_numpy(va_rows)
            vloss = float(
                (
                    torch.nn.functional.cross_entropy(head(xs[vb]), ys[vb], reduction="none")
                    * sw[vb]
                ).mean()
            )
        if vloss < best - 1e-5:
            best, bad = vloss, 0
            best_state = {key: t.clone() for key, t in head.state_dict().items()}
        else:
            bad += 1
            if bad >= config.patience:
                break
    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    return head


def head_logits(head, X: np.ndarray) -> np.ndarray:
    """Logits (n, views, k) of a head on cached features (n, views, D)."""
    n, v, d = X.shape
    with torch.no_grad():
        out = head(torch.from_numpy(X.reshape(n * v, d)))
    return out.numpy().reshape(n, v, -1)


def tta_proba(logits: np.ndarray) -> np.ndarray:
    """Average over views of the per-view softmax: (n, views, k) -> (n, k)."""
    z = logits - logits.max(-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(-1, keepdims=True)
    return p.mean(1)


def fit_prior_shift(logits: np.ndarray, y: np.ndarray, k: int, iters: int = 200) -> np.ndarray:
    """Logit shift b so that the mean TTA probability of each class matches its frequency (a
    fixed-point iteration, stopped after ``iters`` steps or once a step moves b by < 1e-9)."""
    target = np.bincount(y, minlength=k) / len(y)
    target = np.maximum(target, 1e-4)
    b = np.zeros(k)
    e = np.exp(logits - logits.max(-1, keepdims=True))  # softmax(logits + b) = e exp(b) / sum
    for _ in range(iters):
        p = e * np.exp(b)
        mean_p = (p / p.sum(-1, keepdims=True)).mean((0, 1))
        step = np.log(target) - np.log(np.maximum(mean_p, 1e-8))
        step -= step.mean()
        b += step
        if np.abs(step).max() < 1e-9:
            break
    return b.astype(np.float32)


def fit_oof_calibration(proba: np.ndarray, y: np.ndarray, k: int) -> dict:
    """Calibration of the (prior-corrected) head for label-free prior estimation, from the
    inner-CV out-of-fold probabilities ``proba`` (n, k) of the training crops ``y``:
    bias-corrected temperature scaling (``priors.fit_calibration``), the class frequencies the
    calibrated probabilities refer to, and their soft confusion matrix (for BBSE). Stored in
    the model metadata (``training.chosen.calibration``); see ``predict.stored_calibration``."""
    temperature, bias = fit_calibration(proba, y)
    return {
        "method": "bcts",
        "temperature": round(float(temperature), 6),
        "bias": [round(float(b), 6) for b in bias],
        "priors": (np.bincount(y, minlength=k) / len(y)).tolist(),
        "confusion": soft_confusion(calibrate(proba, temperature, bias), y).tolist(),
        "n": int(len(y)),
    }


def pca_basis(X: np.ndarray, r: int | None = None):
    """Standardisation (mu, sd) and the top ``r`` principal axes (D, r), strongest first (all if
    None), of training features X (n, views, D): the axes of the per-crop mean (over views)
    standardised features, from the eigenvectors of their n x n Gram matrix (the SVD's axes at
    a fraction of its cost when n < D; axes of no variance are left out)."""
    n, v, d = X.shape
    flat = X.reshape(-1, d)
    mu = flat.mean(0)
    sd = flat.std(0)
    sd = np.where(sd > 1e-6, sd, 1.0)
    if r == 0:
        return mu, sd, None
    m = ((X.mean(1) - mu) / sd).astype(np.float64)
    m -= m.mean(0)
    eigenvalues, u = np.linalg.eigh(m @ m.T)
    s = np.sqrt(np.maximum(eigenvalues[::-1], 0.0))
    rank = int((s > s[0] * 1e-6).sum()) if s.size and s[0] > 0 else 0
    keep = max(min(rank, r or rank), 1)
    axes = m.T @ (u[:, ::-1][:, :keep] / np.where(s[:keep] > 0, s[:keep], 1.0))
    return mu, sd, np.ascontiguousarray(axes.astype(np.float32))


def fit_linear(
    Z: np.ndarray,
    y: np.ndarray,
    k: int,
    config: TrainingConfig,
    l2: float,
    init=None,
    sample_weight: np.ndarray | None = None,
):
    """Class-balanced L2 multinomial logistic regression on Z (n, views, r): weights (k, r) and
    bias (k,) minimising the class-weighted mean cross-entropy over all rows + 0.5 * l2 *
    |weights|^2, by L-BFGS (scipy) on the analytic loss and gradient.

    ``init``: (weights, bias) of a fit on the same rows (e.g. with another L2) to start from.
    ``sample_weight``: (n,) weight of each crop on top of the class balance (e.g. a lab's own
    crops above published ones).
    In float64 on one BLAS thread (see ``training._one_thread``), so that the fit (and the
    inner-CV choice built on it) does not depend on the machine's thread count."""
    from scipy.optimize import minimize

    n, v, r = Z.shape
    zs = np.ascontiguousarray(Z.reshape(n * v, r), dtype=np.float64)
    rows = np.repeat(np.asarray(y, np.intp), v)
    sw = balance_weights(y, k, config.class_balance)[rows]
    if sample_weight is not None:
        sw = sw * np.repeat(np.asarray(sample_weight, np.float64), v)
    sw = sw / sw.sum()  # the weighted MEAN loss
    picked = np.arange(len(rows)), rows
    # L-BFGS runs on weights x column sd (the same minimum, reached in fewer steps)
    sd = zs.std(0)
    scale = np.concatenate([np.tile(1.0 / np.where(sd > 1e-12, sd, 1.0), k), np.ones(k)])

    def loss_grad(u: np.ndarray) -> tuple[float, np.ndarray]:
        theta = u * scale
        w, b = theta[: k * r].reshape(k, r), theta[k * r :]
        z = zs @ w.T + b
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        total = p.sum(1)
        p /= total[:, None]
        loss = sw @ (np.log(total) - z[picked]) + 0.5 * l2 * (w * w).sum()
        p[picked] -= 1.0
        p *= sw[:, None]  # d loss / d logits
        return float(loss), np.concatenate([(p.T @ zs + l2 * w).ravel(), p.sum(0)]) * scale

    start = np.zeros(k * r + k)
    if init is not None:
        start = np.concatenate([np.ravel(init[0]), np.ravel(init[1])]).astype(np.float64)
    theta = (
        scale
        * minimize(
            loss_grad,
            start / scale,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": config.max_iter, "maxcor": 20, "gtol": 1e-6, "ftol": 1e-10},
        ).x
    )
    return theta[: k * r].reshape(k, r).copy(), theta[k * r :].copy()


def validation_mask(y: np.ndarray, k: int, fraction: float, rng) -> np.ndarray:
    """A stratified validation split: ``fraction`` of each class (of more than 2 members)."""
    mask = np.zeros(len(y), bool)
    for c in range(k):
        members = np.flatnonzero(y == c)
        n_val = int(round(fraction * len(members)))
        if len(members) > 2 and n_val:
            mask[rng.choice(members, n_val, replace=False)] = True
    return mask


def reference_shift(
    X: np.ndarray, y: np.ndarray, reference: np.ndarray, k: int, min_count: int = 5
) -> np.ndarray:
    """The move (D,) that carries crops of a reference set (e.g. published crops of another lab)
    onto the look of the user's own crops in feature space: per class, the mean features of the
    own crops minus those of the reference crops, averaged over the classes with at least
    ``min_count`` crops of each source, weighted by the own crops' counts. Class-conditional, so
    the own crops' class mix does not leak into the move; zeros when no class qualifies."""
    reference = np.asarray(reference, bool)
    y = np.asarray(y, int)
    means = X.mean(1) if X.ndim == 3 else X
    moves, counts = [], []
    for c in range(k):
        own, ref = (y == c) & ~reference, (y == c) & reference
        if own.sum() >= min_count and ref.sum() >= min_count:
            moves.append(means[own].mean(0) - means[ref].mean(0))
            counts.append(own.sum())
    if not moves:
        return np.zeros(X.shape[-1], np.float32)
    return np.average(moves, axis=0, weights=counts).astype(np.float32)
