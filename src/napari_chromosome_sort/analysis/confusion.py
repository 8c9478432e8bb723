"""The classifier's own error in the readout: shares corrected for the model's confusion, with
intervals that carry both the counting error and the confusion matrix's own uncertainty.

A model that calls a true C chromosome B 30 % of the time shifts every share it reports. Given
its cross-validated confusion on its training labels (rows = true class, columns = call), the
true shares ``pi`` that best explain the observed calls are found by maximum likelihood over the
simplex (EM; the same as inverting the confusion where that gives shares in [0, 1]). The
interval comes from a parametric bootstrap: each draw takes the call shares from their
Dirichlet posterior (Jeffreys prior; for a sample, at the effective size left by the
spread-to-spread variation) and each confusion row from its own Dirichlet posterior, then
corrects again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from napari_chromosome_sort.errors import ChromosortError

DRAWS = 2000
EM_STEPS = 300


@dataclass(frozen=True)
class Confusion:
    """A confusion matrix: ``counts[i, j]`` = training crops of true class ``classes[i]`` that
    the model called ``classes[j]`` (out of fold); ``source`` says where it came from."""

    classes: list[str]
    counts: np.ndarray
    source: str
    soft: bool = False
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        counts = np.asarray(self.counts, dtype=float)
        k = len(self.classes)
        if counts.shape != (k, k) or not np.isfinite(counts).all() or (counts < 0).any():
            raise ChromosortError(
                f"confusion matrix must be {k} x {k} non-negative counts for classes "
                f"{self.classes}; got shape {counts.shape}"
            )
        object.__setattr__(self, "counts", counts)

    @property
    def rates(self) -> np.ndarray:
        """Row-normalised: P(call j | true i); a class without crops keeps an identity row."""
        totals = self.counts.sum(1, keepdims=True)
        eye = np.eye(len(self.classes))
        return np.where(totals > 0, self.counts / np.maximum(totals, 1e-300), eye)

    @property
    def accuracy(self) -> float:
        """Share of the training crops called right."""
        return float(np.trace(self.counts) / max(self.counts.sum(), 1e-300))

    def aligned(self, classes) -> Confusion | None:
        """The same matrix in the order of ``classes`` (names matched exactly, else ignoring
        case); None when the two sets of classes differ."""
        own = [str(c) for c in self.classes]
        wanted = [str(c) for c in classes]
        for key in (lambda s: s, str.lower):
            index = {key(c): i for i, c in enumerate(own)}
            if len(index) == len(own) and sorted(index) == sorted(key(c) for c in wanted):
                order = [index[key(c)] for c in wanted]
                counts = self.counts[np.ix_(order, order)]
                return Confusion(wanted, counts, self.source, self.soft, list(self.notes))
        return None

    def draw_rates(self, rng: np.random.Generator, draws: int) -> np.ndarray:
        """(draws, k, k) confusion rates, each row from its Dirichlet posterior (counts + 1/2)."""
        k = len(self.classes)
        out = np.empty((draws, k, k))
        for i in range(k):
            out[:, i, :] = rng.dirichlet(self.counts[i] + 0.5, size=draws)
        return out

    def describe(self) -> str:
        """One line for the output: the source, the crops behind it and their concordance."""
        kind = "soft (mean probabilities)" if self.soft else "hard calls"
        n = int(round(self.counts.sum()))
        return (
            f"classifier error from {self.source}: {n} training crops, {kind}, "
            f"{100 * self.accuracy:.1f} % called right"
        )


# ------------------------------------------------------------------ where a confusion comes from


def confusion_from_report(report: dict, source: str = "a metrics report") -> Confusion:
    """From ``chromosort crossval --json`` / ``evaluate --json`` output (``classes`` and
    ``confusion.counts``, rows = true). Repeats of a cross-validation are scaled back to one
    call per crop (``n``), so that the matrix is not more certain than its crops."""
    try:
        classes = [str(c) for c in report["classes"]]
        confusion = report["confusion"]
        counts = np.asarray(
            confusion["counts"] if isinstance(confusion, dict) else confusion, dtype=float
        )
    except (KeyError, TypeError, ValueError):
        raise ChromosortError(
            f"{source} has no confusion matrix (needs 'classes' and 'confusion.counts')"
        ) from None
    n = report.get("n")
    if isinstance(n, int | float) and n > 0 and counts.sum() > n * 1.01:
        counts = counts * (n / counts.sum())
    return Confusion(classes, counts, source)


def confusion_from_metadata(meta: dict, source: str = "the model") -> Confusion | None:
    """The model's stored cross-validated confusion: ``metrics.confusion`` (hard calls), else
    the soft out-of-fold confusion that training keeps for prior estimation
    (``training.chosen.calibration.confusion``: mean probability of each call per true class);
    None when the model stores neither."""
    classes = [str(c) for c in meta.get("classes") or []]
    metrics = meta.get("metrics") or {}
    if isinstance(metrics, dict) and metrics.get("confusion") is not None:
        report = {"classes": metrics.get("classes", classes), **metrics}
        return confusion_from_report(report, f"{source} (stored cross-validated confusion)")
    calibration = ((meta.get("training") or {}).get("chosen") or {}).get("calibration")
    if not isinstance(calibration, dict) or calibration.get("confusion") is None:
        return None
    try:
        joint = np.asarray(calibration["confusion"], dtype=float)  # rows = call, columns = true
        n = float(calibration.get("n") or 0)
    except (TypeError, ValueError):
        return None
    if joint.shape != (len(classes), len(classes)) or n <= 0:
        return None
    return Confusion(classes, joint.T * n, f"{source} (inner-CV out-of-fold confusion)", True)


def load_confusion(path, name: str | None = None) -> Confusion | None:
    """A confusion from a metrics JSON (crossval / evaluate) or a model file; None for a model
    that stores none. ``name``: what the reports call the file (default: its name)."""
    path = Path(path)
    name = name or path.name
    if not path.is_file():
        raise ChromosortError(f"confusion source {path} does not exist")
    if path.suffix.lower() == ".json":
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ChromosortError(f"cannot read metrics JSON {path}: {error}") from None
        return confusion_from_report(report, name)
    # torch (through model_io): only for a model file
    from napari_chromosome_sort.classification.models.model_io import read_metadata

    return confusion_from_metadata(read_metadata(path), name)


# ------------------------------------------------------------------ correction


def _project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row of ``v`` onto the probability simplex."""
    k = v.shape[-1]
    u = -np.sort(-v, axis=-1)
    css = np.cumsum(u, axis=-1) - 1
    ind = np.arange(1, k + 1)
    cond = u - css / ind > 0
    rho = k - 1 - np.argmax(cond[..., ::-1], axis=-1)
    theta = np.take_along_axis(css, rho[..., None], axis=-1) / (rho[..., None] + 1)
    return np.maximum(v - theta, 0)


def correct_shares(called: np.ndarray, rates: np.ndarray, steps: int = EM_STEPS) -> np.ndarray:
    """True shares that best explain the call shares ``called`` (..., k) under the confusion
    ``rates`` (..., k, k), P(call j | true i): maximum likelihood over the simplex by EM, started
    from the inverted confusion projected onto the simplex."""
    called = np.asarray(called, dtype=float)
    rates = np.broadcast_to(np.asarray(rates, dtype=float), called.shape[:-1] + rates.shape[-2:])
    called = called / np.maximum(called.sum(-1, keepdims=True), 1e-300)
    k = called.shape[-1]
    try:
        start = np.linalg.solve(np.swapaxes(rates, -1, -2), called[..., None])[..., 0]
        start = np.where(np.isfinite(start), start, 1.0 / k)
    except np.linalg.LinAlgError:
        start = np.full_like(called, 1.0 / k)
    pi = 0.9 * _project_simplex(start) + 0.1 / k
    for _ in range(steps):
        expected = np.einsum("...i,...ij->...j", pi, rates)
        ratio = called / np.maximum(expected, 1e-300)
        pi = pi * np.einsum("...ij,...j->...i", rates, ratio)
        pi = pi / np.maximum(pi.sum(-1, keepdims=True), 1e-300)
    return pi


def fit_p(counts: np.ndarray, rates: np.ndarray, estimate: np.ndarray) -> float:
    """Whether the confusion can explain these calls at all: the likelihood-ratio test (G) of
    the calls against the call shares the corrected estimate predicts, on as many degrees of
    freedom as the estimate has shares held at 0 (where the constraint binds; an estimate inside
    the simplex fits exactly and gives 1). A small p says the model errs on these chromosomes
    otherwise than on its training crops, so the corrected shares are not to be trusted."""
    counts = np.asarray(counts, dtype=float)
    n = counts.sum()
    df = int((np.asarray(estimate) <= 1e-6).sum())
    if n <= 0 or df == 0:
        return 1.0
    expected = n * np.maximum(np.asarray(estimate) @ np.asarray(rates), 1e-300)
    seen = counts > 0
    g = 2 * float((counts[seen] * np.log(counts[seen] / expected[seen])).sum())
    return float(stats.chi2.sf(max(g, 0.0), df))


def overdispersion(counts: np.ndarray) -> tuple[float, int]:
    """Spread-to-spread overdispersion of one sample: Pearson X² of its spreads' calls against
    the sample's pooled shares over its degrees of freedom ((spreads - 1)(classes seen - 1)),
    at least 1 (what independent chromosomes give); ``(1.0, 0)`` with fewer than 2 spreads."""
    counts = np.asarray(counts, dtype=float)
    counts = counts[counts.sum(1) > 0]
    seen = counts.sum(0) > 0
    df = (len(counts) - 1) * (int(seen.sum()) - 1)
    if df <= 0:
        return 1.0, 0
    shares = counts.sum(0) / counts.sum()
    expected = counts.sum(1, keepdims=True) * shares[None, :]
    x2 = ((counts[:, seen] - expected[:, seen]) ** 2 / expected[:, seen]).sum()
    return max(1.0, float(x2 / df)), int(df)


def call_share_draws(counts: np.ndarray, rng, draws: int = DRAWS) -> np.ndarray:
    """(draws, k) call shares of a sample (``counts``: spreads x classes): Dirichlet posterior
    of the pooled calls at the effective size n / phi, with phi drawn from its own sampling
    distribution (scaled inverse chi-square on the spreads' degrees of freedom, at least 1), so
    that few spreads give wide intervals. One spread (or a 1 x k array) counts as multinomial."""
    counts = np.atleast_2d(np.asarray(counts, dtype=float))
    pooled = counts.sum(0)
    n = pooled.sum()
    phi, df = overdispersion(counts)
    phis = np.ones(draws)
    if df > 0:
        phis = np.maximum(1.0, phi * df / rng.chisquare(df, size=draws))
    shares = pooled / max(n, 1e-300)
    alpha = shares[None, :] * (n / phis)[:, None] + 0.5
    gammas = rng.standard_gamma(alpha)
    return gammas / gammas.sum(1, keepdims=True)


def adjusted_shares(
    counts: np.ndarray, confusion: Confusion, rng, draws: int = DRAWS
) -> tuple[np.ndarray, np.ndarray]:
    """Corrected shares of one spread or sample (``counts``: k, or spreads x k) and their
    bootstrap draws (draws, k): call shares and confusion rows drawn together."""
    counts = np.atleast_2d(np.asarray(counts, dtype=float))
    estimate = correct_shares(counts.sum(0), confusion.rates)
    called = call_share_draws(counts, rng, draws)
    return estimate, correct_shares(called, confusion.draw_rates(rng, draws))


def percentile_interval(
    draws: np.ndarray, estimate: np.ndarray, alpha: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed bootstrap interval of each column, widened to hold the estimate."""
    lo = np.quantile(draws, alpha / 2, axis=0)
    hi = np.quantile(draws, 1 - alpha / 2, axis=0)
    return np.minimum(lo, estimate), np.maximum(hi, estimate)


def t_quantile(df: float, alpha: float = 0.05) -> float:
    """Two-sided quantile of Student's t (normal for df <= 0, i.e. unknown, or infinite)."""
    if not df or df <= 0 or not np.isfinite(df):
        return float(stats.norm.ppf(1 - alpha / 2))
    return float(stats.t.ppf(1 - alpha / 2, df))
