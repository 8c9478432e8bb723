"""Heads on cached backbone features: class-balanced L2 logistic regression (L-BFGS, on PCA
components) or a small MLP (Adam, early stopping), test-time averaging over the dihedral views,
and the prior shift and calibration fitted on out-of-fold predictions."""

from __future__ import annotations

import numpy as np
import torch

from .classifier import PooledHead
from .config import TrainingConfig


def class_weights(y: np.ndarray, k: int, balance: bool):
    """Per-class loss weights (k,): n / (k * count) if ``balance`` (0 for absent classes),
    else ones."""
    counts = np.bincount(y, minlength=k).astype(np.float64)
    if not balance:
        return torch.ones(k)
    w = np.where(counts > 0, len(y) / (k * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def _standardise(head, X: np.ndarray) -> None:
    flat = X.reshape(-1, X.shape[-1])
    mu = flat.mean(0)
    sd = flat.std(0)
    sd = np.where(sd > 1e-6, sd, 1.0)
    head.mu.copy_(torch.from_numpy(mu.astype(np.float32)))
    head.sigma.copy_(torch.from_numpy(sd.astype(np.float32)))


def _lbfgs_logistic(params, logits_fn, weight, ys, sw, l2: float, max_iter: int, tol: float):
    """Minimise sample-weighted cross-entropy + 0.5 * l2 * |weight|^2 over ``params`` by L-BFGS."""
    opt = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-6,
        tolerance_change=tol,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        """Recompute the penalised loss and its gradients (L-BFGS closure)."""
        opt.zero_grad()
        loss = (torch.nn.functional.cross_entropy(logits_fn(), ys, reduction="none") * sw).mean()
        loss = loss + 0.5 * l2 * (weight**2).sum()
        loss.backward()
        return loss

    opt.step(closure)


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

    if config.hidden == 0 and config.dropout == 0:
        z = (xs - head.mu) / head.sigma
        lin = head.net
        if init is not None:
            head.load_state_dict(init.state_dict())
        _lbfgs_logistic(
            list(lin.parameters()), lambda: lin(z), lin.weight, ys, sw, l2, config.max_iter, 1e-9
        )
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
    """Logit shift b so that the mean TTA probability of each class matches its frequency."""
    target = np.bincount(y, minlength=k) / len(y)
    target = np.maximum(target, 1e-4)
    b = np.zeros(k)
    for _ in range(iters):
        mean_p = tta_proba(logits + b).mean(0)
        b += np.log(target) - np.log(np.maximum(mean_p, 1e-8))
        b -= b.mean()
    return b.astype(np.float32)


def fit_oof_calibration(proba: np.ndarray, y: np.ndarray, k: int) -> dict:
    """Calibration of the (prior-corrected) head for label-free prior estimation, from the
    inner-CV out-of-fold probabilities ``proba`` (n, k) of the training crops ``y``:
    bias-corrected temperature scaling (``priors.fit_calibration``), the class frequencies the
    calibrated probabilities refer to, and their soft confusion matrix (for BBSE). Stored in
    the model metadata (``training.chosen.calibration``); see ``predict.stored_calibration``."""
    from .priors import calibrate, fit_calibration, soft_confusion

    temperature, bias = fit_calibration(proba, y)
    return {
        "method": "bcts",
        "temperature": round(float(temperature), 6),
        "bias": [round(float(b), 6) for b in bias],
        "priors": (np.bincount(y, minlength=k) / len(y)).tolist(),
        "confusion": soft_confusion(calibrate(proba, temperature, bias), y).tolist(),
        "n": int(len(y)),
    }


def pca_basis(X: np.ndarray):
    """Standardisation (mu, sd) and the principal axes (D, r), strongest first, of training
    features X (n, views, D): an exact, cheap SVD of the per-crop mean (over views) features."""
    n, v, d = X.shape
    flat = X.reshape(-1, d)
    mu = flat.mean(0)
    sd = flat.std(0)
    sd = np.where(sd > 1e-6, sd, 1.0)
    m = ((X.mean(1) - mu) / sd).astype(np.float64)
    m -= m.mean(0)
    _, s, vt = np.linalg.svd(m, full_matrices=False)
    r = int((s > s[0] * 1e-6).sum()) if s.size and s[0] > 0 else 0
    return mu, sd, np.ascontiguousarray(vt[: max(r, 1)].T.astype(np.float32))


def fit_linear(Z: np.ndarray, y: np.ndarray, k: int, config: TrainingConfig, l2: float, init=None):
    """Class-balanced L2 multinomial logistic regression by L-BFGS on Z (n, views, r).

    In float64, so that the fit (and the inner-CV choice built on it) does not depend on the
    number of CPU threads."""
    n, v, r = Z.shape
    zs = torch.from_numpy(np.ascontiguousarray(Z.reshape(n * v, r), dtype=np.float64))
    ys = torch.from_numpy(np.repeat(y, v)).long()
    sw = class_weights(y, k, config.class_balance)[ys].double()
    sw = sw / sw.mean()
    torch.manual_seed(config.seed)
    w = torch.zeros(k, r, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    if init is not None:
        with torch.no_grad():
            w.copy_(torch.from_numpy(init[0]))
            b.copy_(torch.from_numpy(init[1]))
    _lbfgs_logistic([w, b], lambda: zs @ w.T + b, w, ys, sw, l2, config.max_iter, 1e-10)
    return w.detach().numpy().copy(), b.detach().numpy().copy()


def validation_mask(y: np.ndarray, k: int, fraction: float, rng) -> np.ndarray:
    """A stratified validation split: ``fraction`` of each class (of more than 2 members)."""
    mask = np.zeros(len(y), bool)
    for c in range(k):
        members = np.flatnonzero(y == c)
        n_val = int(round(fraction * len(members)))
        if len(members) > 2 and n_val:
            mask[rng.choice(members, n_val, replace=False)] = True
    return mask
