"""Learned crossing score: is a kept object two chromosomes lying across each other?

The segmentation's hand-made crossing rules (:func:`.segmentation.crossings.flag_crossings`) catch
crossings with a bright double-DNA overlap or a bright cut; in fluorescence spreads many
crossings have neither (their overlap is no brighter than a DAPI band). This score looks at the
whole shape instead: 16 measures of each kept object (:data:`FEATURES`, all relative to the
spread's median object, chromatid width or the object's own intensity), combined by a
standardised logistic regression trained on the ADIR DAPI spreads with ``K.tif`` overlap truth
(:func:`fit_crossing_model`, run on the real data by ``python -m validation crossing-model``;
the coefficients ship as ``data/crossing_model.json``).

The score is **relative to the spread**: the median score of the spread's kept objects is
subtracted before the threshold (the typical chromosome of a spread scores 0). Only objects at
least ``min_rel_area`` (1.8) x the spread's median object are flagged: a crossing is two
chromosomes, while a single chromosome whose sister chromatids have come apart (a type B/C
cohesion call, X-shaped too) is one. A spread-level shift of the score scale was what kept a
model trained on two slide sets from carrying over to a third (``docs/validation.md``,
"Segmentation"); the typical chromosome of a spread is the reference that travels. With fewer
than ``min_objects`` kept objects the median of the training spreads is used instead.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.segmentation.learned.json_model import JsonModel

FEATURES = (
    "log_rel_area",
    "solidity",
    "eccentricity",
    "extent",
    "rel_max_width",
    "rel_major_axis",
    "skeleton_ends",
    "skeleton_branch_points",
    "p95_over_median",
    "max_over_median",
    "plateau_1_3",
    "plateau_1_6",
    "log_rel_mean",
    "contact_fraction",
    "contact_brightness",
    "n_parts",
)
MODEL_FORMAT = "chromosort-crossing-model/1"
DEFAULT_MODEL = "crossing_model.json"
L2_GRID = (0.01, 0.1, 1.0)  # inverse L2 strengths C tried by the inner cross-validation


def skeleton_counts(mask: np.ndarray, prune: float) -> tuple[int, int]:
    """(end points, branch points) of the skeleton of ``mask`` after pruning spurs < prune px."""
    from scipy import ndimage as ndi
    from skimage.morphology import skeletonize

    kernel = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], np.uint8)
    skel = skeletonize(np.pad(mask, 1))
    for _ in range(max(1, int(round(prune)))):
        nb = ndi.convolve(skel.astype(np.uint8), kernel, mode="constant")
        ends = skel & (nb <= 1)
        if not ends.any() or skel.sum() - ends.sum() < 2:
            break
        skel &= ~ends
    nb = ndi.convolve(skel.astype(np.uint8), kernel, mode="constant")
    return int((skel & (nb == 1)).sum()), int(ndi.label(skel & (nb >= 3))[1])


def _contacts(label_img: np.ndarray, smooth: np.ndarray):
    """Contact pixels per label and, per ordered pair (this, other), the smoothed signal on this
    object's side of their common boundary."""
    contact_px = np.zeros(int(label_img.max()) + 1, float)
    values: dict[tuple[int, int], list] = {}
    for axis in (0, 1):
        a = label_img[:-1] if axis == 0 else label_img[:, :-1]
        b = label_img[1:] if axis == 0 else label_img[:, 1:]
        sel = (a != b) & (a > 0) & (b > 0)
        if not sel.any():
            continue
        np.add.at(contact_px, a[sel], 1)
        np.add.at(contact_px, b[sel], 1)
        sa = (smooth[:-1] if axis == 0 else smooth[:, :-1])[sel]
        sb = (smooth[1:] if axis == 0 else smooth[:, 1:])[sel]
        for u, v, x, y in zip(a[sel].tolist(), b[sel].tolist(), sa, sb, strict=True):
            values.setdefault((u, v), []).append(x)
            values.setdefault((v, u), []).append(y)
    return contact_px, values


def shape_measures(label_img, signal, labels, median_area, width, n_parts) -> np.ndarray:
    """``(len(labels), len(FEATURES))`` measures of the objects ``labels`` of ``label_img``.

    ``signal``: the corrected, objects-bright signal; ``median_area`` and ``width``: the spread's
    median object area and chromatid width (:attr:`.Segmentation.stats`); ``n_parts``: separate
    blobs per object (2 for a grouped chromatid pair).
    """
    from scipy import ndimage as ndi
    from skimage.measure import regionprops

    labels = [int(v) for v in labels]
    out = np.zeros((len(labels), len(FEATURES)), np.float32)
    if not labels:
        return out
    width = max(float(width), 1.0)
    median_area = max(float(median_area), 1.0)
    smooth = ndi.gaussian_filter(np.asarray(signal, np.float32), max(1.0, width / 4.0))
    slices = ndi.find_objects(label_img)
    means = np.asarray(ndi.mean(signal, label_img, labels), float)
    typical_mean = max(float(np.median(means)), 1e-9)
    contact_px, contact_vals = _contacts(label_img, smooth)
    own_median = {}
    for i, lab in enumerate(labels):
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in slices[lab - 1])
        local = label_img[sl] == lab
        region = regionprops(local.astype(np.uint8))[0]
        values = smooth[sl][local]
        med = max(float(np.median(values)), 1e-9)
        own_median[lab] = med
        ends, branches = skeleton_counts(local, 0.75 * width)
        out[i] = (
            np.log(region.area / median_area),
            region.solidity,
            region.eccentricity,
            region.extent,
            2.0 * float(ndi.distance_transform_edt(np.pad(local, 1)).max()) / width,
            region.axis_major_length / np.sqrt(median_area),
            min(ends, 8),
            min(branches, 8),
            float(np.quantile(values, 0.95)) / med,
            float(values.max()) / med,
            float(np.sum(values > 1.3 * med)) / width**2,
            float(np.sum(values > 1.6 * med)) / width**2,
            np.log(max(means[i], 1e-9) / typical_mean),
            min(contact_px[lab] / max(float(region.perimeter), 1.0), 1.0),
            0.0,
            n_parts[i],
        )
    col = FEATURES.index("contact_brightness")
    index = {lab: i for i, lab in enumerate(labels)}
    for (u, v), vals in contact_vals.items():
        if u not in index or v not in index or len(vals) < 0.5 * width:
            continue
        back = contact_vals.get((v, u), vals)
        rel = min(float(np.median(vals)) / own_median[u], float(np.median(back)) / own_median[v])
        out[index[u], col] = max(out[index[u], col], rel)
    return out


def crossing_candidates(x: np.ndarray, min_rel_area: float) -> np.ndarray:
    """Rows of ``x`` (:data:`FEATURES`) the score may flag: single pieces (``n_parts`` 1) of at
    least ``min_rel_area`` x the median object."""
    x = np.asarray(x, float).reshape(-1, len(FEATURES))
    big = np.exp(x[:, FEATURES.index("log_rel_area")]) >= min_rel_area
    return big & (x[:, FEATURES.index("n_parts")] == 1)


@dataclass(frozen=True)
class CrossingModel(JsonModel):
    """Standardised logistic regression on :data:`FEATURES`, thresholded on the spread-relative
    logit (see the module docstring)."""

    KIND = "crossing"
    FORMAT = MODEL_FORMAT
    DEFAULT_FILE = DEFAULT_MODEL

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float  # on the logit minus the spread's median logit
    typical_median: float  # median logit of a training spread's kept objects
    min_objects: int = 10  # fewer kept objects: use typical_median as the spread's median
    min_rel_area: float = 1.8  # only objects at least this x the median object are flagged
    features: tuple[str, ...] = FEATURES
    provenance: str = ""

    def __post_init__(self):
        n = len(self.features)
        if tuple(self.features) != FEATURES:
            raise ChromosortError(
                f"crossing model expects features {list(self.features)}, this version computes "
                f"{list(FEATURES)}"
            )
        for name in ("mean", "scale", "coef"):
            if len(getattr(self, name)) != n:
                raise ChromosortError(f"crossing model: '{name}' must have {n} values")
        if not all(np.isfinite(self.scale)) or min(self.scale) <= 0:
            raise ChromosortError("crossing model: 'scale' must be positive")

    def logit(self, x: np.ndarray) -> np.ndarray:
        """Raw (not spread-relative) logit of each row of ``x``."""
        z = (np.asarray(x, float) - np.asarray(self.mean)) / np.asarray(self.scale)
        return z @ np.asarray(self.coef) + self.intercept

    def relative_scores(self, x: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
        """Logits minus the median logit of ``reference`` rows (default: ``x``), the spread's
        kept objects; ``typical_median`` when there are fewer than ``min_objects`` of them."""
        scores = self.logit(x)
        ref = scores if reference is None else self.logit(reference)
        median = float(np.median(ref)) if len(ref) >= self.min_objects else self.typical_median
        return scores - median

    def flags(
        self,
        x: np.ndarray,
        reference: np.ndarray | None = None,
        threshold: float | None = None,
    ) -> np.ndarray:
        """Which rows of ``x`` are crossings: :func:`crossing_candidates` whose spread-relative
        score is above the threshold (default: the model's)."""
        x = np.asarray(x, float)
        if len(x) == 0:
            return np.zeros(0, bool)
        threshold = self.threshold if threshold is None else threshold
        scores = self.relative_scores(x, reference)
        return crossing_candidates(x, self.min_rel_area) & (scores > threshold)


def load_crossing_model(path: str | Path | None = None) -> CrossingModel:
    """The crossing model at ``path``, or the one shipped with the package (read once)."""
    return _shipped_model() if path is None else CrossingModel.read(path)


@functools.cache
def _shipped_model() -> CrossingModel:
    return CrossingModel.read(None)


# ------------------------------------------------------------------------------ training


def _head(c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    )


@dataclass(frozen=True)
class CrossingTable:
    """Training objects of :func:`fit_crossing_model`, one row each (kept or ``cluster``).

    ``x``: :data:`FEATURES`; ``positive``: covers a real overlap of two chromosomes;
    ``n_match``: truth chromosomes it matches one-to-one (mask IoU >= 0.5); ``kept``: status
    ``chromosome`` (else ``cluster``); ``spreads``: the spread of each row (scores are relative
    to it); ``groups``: the unit held out together by the inner cross-validation (a slide).
    """

    x: np.ndarray
    positive: np.ndarray
    n_match: np.ndarray
    kept: np.ndarray
    spreads: np.ndarray
    groups: np.ndarray

    @property
    def matched(self) -> np.ndarray:
        """Kept objects that are one truth chromosome (the singles a threshold may lose)."""
        return self.kept & (self.n_match > 0)

    @property
    def trainable(self) -> np.ndarray:
        """Kept singles and kept overlap objects, plus overlap objects already ``cluster``."""
        single = (self.n_match > 0) & ~self.positive
        return (self.kept & (self.positive | single)) | (~self.kept & self.positive)


def spread_relative(logits: np.ndarray, spreads: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Logits minus the median logit of the same spread's kept objects (NaN rows stay NaN)."""
    out = np.array(logits, float)
    for spread in np.unique(spreads[~np.isnan(out)]):
        here = spreads == spread
        out[here] -= np.median(out[here & kept])
    return out


def choose_head(
    table: CrossingTable,
    rows: np.ndarray,
    budget: float = 0.03,
    min_rel_area: float = 1.8,
    l2_grid: tuple[float, ...] = L2_GRID,
    folds: int = 5,
) -> tuple[float, float, int]:
    """(C, threshold, overlap objects caught), chosen on ``rows`` by GroupKFold over ``groups``.

    For each C the out-of-fold spread-relative scores are computed; the threshold is the score
    at which the candidates among the matched singles lose ``budget`` of all matched singles,
    and the C catching the most kept overlap candidates above it wins.
    """
    from sklearn.model_selection import GroupKFold

    x, y, n = np.asarray(table.x, np.float64), table.positive.astype(int), len(table.x)
    candidates = crossing_candidates(x, min_rel_area)
    fold = np.full(n, -1)
    for k, (_, te) in enumerate(GroupKFold(folds).split(rows, groups=table.groups[rows])):
        fold[rows[te]] = k
    best = None
    for c in l2_grid:
        logits = np.full(n, np.nan)
        for k in range(folds):
            fit = np.flatnonzero((fold >= 0) & (fold != k) & table.trainable)
            test = fold == k
            logits[test] = _head(c).fit(x[fit], y[fit]).decision_function(x[test])
        z = spread_relative(logits, table.spreads, table.kept)
        ev = fold >= 0
        n_singles = int((ev & table.matched).sum())
        singles = np.sort(z[ev & candidates & table.matched])[::-1]
        if not singles.size:
            raise ChromosortError("no matched single is large enough to be flagged: no threshold")
        threshold = float(singles[min(int(budget * n_singles), singles.size - 1)])
        caught = int((ev & table.kept & candidates & table.positive & (z > threshold)).sum())
        if best is None or caught > best[2]:
            best = (c, threshold, caught)
    return best


def fit_crossing_model(
    table: CrossingTable,
    rows: np.ndarray | None = None,
    budget: float = 0.03,
    min_rel_area: float = 1.8,
    l2_grid: tuple[float, ...] = L2_GRID,
    provenance: str = "",
) -> CrossingModel:
    """The crossing model of ``rows`` (default: all) of ``table``: C and threshold by
    :func:`choose_head`, then the head refitted on every trainable row of ``rows``.

    ``provenance`` (where the data come from) is completed with how the model was fitted.
    """
    rows = np.arange(len(table.x)) if rows is None else np.asarray(rows)
    c, threshold, _ = choose_head(table, rows, budget, min_rel_area, l2_grid)
    how = (
        f"L2 logistic regression C={c:g}, class-balanced; threshold = loss of {budget:.0%} of "
        f"matched singles on slide-grouped out-of-fold scores, objects >= {min_rel_area:g} x the "
        "median object"
    )
    return refit_head(
        table, rows, c, threshold, min_rel_area, f"{provenance}; {how}" if provenance else how
    )


def refit_head(
    table: CrossingTable,
    rows: np.ndarray,
    c: float,
    threshold: float,
    min_rel_area: float = 1.8,
    provenance: str = "",
) -> CrossingModel:
    """The head of strength ``c`` fitted on the trainable ``rows`` of ``table``, as a model."""
    x, y = np.asarray(table.x, np.float64), table.positive.astype(int)
    fit = np.zeros(len(x), bool)
    fit[rows] = True
    fit &= table.trainable
    head = _head(c).fit(x[fit], y[fit])
    scaler, logistic = head[0], head[1]
    logits = head.decision_function(x[rows])
    spreads, kept = table.spreads[rows], table.kept[rows]
    medians = [np.median(logits[(spreads == s) & kept]) for s in np.unique(spreads)]
    return CrossingModel(
        mean=tuple(float(v) for v in scaler.mean_),
        scale=tuple(float(v) for v in scaler.scale_),
        coef=tuple(float(v) for v in logistic.coef_[0]),
        intercept=float(logistic.intercept_[0]),
        threshold=round(threshold, 4),
        typical_median=float(np.median(medians)),
        min_rel_area=min_rel_area,
        provenance=provenance,
    )
