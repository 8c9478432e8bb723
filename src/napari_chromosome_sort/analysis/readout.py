"""Per-sample readout: class distributions with intervals, per-spread variation, the sample
comparison. Qt-free and torch-free (numpy, scipy, pandas only).

A *calls table* is any DataFrame with one row per classified object and at least a sample column
(default ``sample``) and a class column (default ``class``); an optional spread column (default
``spread``) groups objects into spreads, which are the replicates of the comparison (see
:mod:`.spreads`); an optional boolean ``corrected`` column marks calls corrected by hand. Rows
whose class is missing (e.g. nuclei and debris in ``objects.csv``) are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from napari_chromosome_sort.analysis import confusion as cm
from napari_chromosome_sort.analysis.agreement import agreement, agreement_from_long, cohen_kappa  # noqa: F401 (public API)
from napari_chromosome_sort.analysis.chromosome_test import Comparison, _format_p, compare_counts  # noqa: F401 (public API)
from napari_chromosome_sort.analysis.compare import (
    compare_pair,
    sample_lines,  # noqa: F401 (public API)
)
from napari_chromosome_sort.analysis.spreads import sample_interval
from napari_chromosome_sort.errors import ChromosortError

if TYPE_CHECKING:
    from napari_chromosome_sort.analysis.confusion import Confusion

HAND_CORRECTED = "corrected"  # optional boolean column: the call was corrected by hand

# The biology of Ikemoto et al. 2022: type distribution in WT vs CTF18-/- TK6 cells.
PAPER_DISTRIBUTIONS = {
    "WT": {"A": 0.637, "B": 0.305, "C": 0.058},
    "CTF18-/-": {"A": 0.265, "B": 0.522, "C": 0.213},
}


# ------------------------------------------------------------------ intervals


def wilson_interval(k, n, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion ``k / n`` (vectorised; n = 0 -> (0, 1))."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    z = stats.norm.ppf(1 - alpha / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, k / np.maximum(n, 1), 0.0)
        denom = 1 + z**2 / np.maximum(n, 1)
        centre = (p + z**2 / (2 * np.maximum(n, 1))) / denom
        half = z * np.sqrt(p * (1 - p) / np.maximum(n, 1) + z**2 / (4 * np.maximum(n, 1) ** 2))
        half = half / denom
    lo = np.where(n > 0, np.clip(centre - half, 0, 1), 0.0)
    hi = np.where(n > 0, np.clip(centre + half, 0, 1), 1.0)
    return lo, hi


# ------------------------------------------------------------------ tables


def _check_columns(table: pd.DataFrame, *columns: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ChromosortError(
            f"calls table lacks column(s) {missing}; it has {list(table.columns)}. "
            "Name the right columns (e.g. --sample-col / --class-col)."
        )


def _classified(table: pd.DataFrame, class_col: str) -> pd.DataFrame:
    out = table[table[class_col].notna()].copy()
    out[class_col] = out[class_col].astype(str)
    out = out[out[class_col] != ""]
    return out


def _class_order(values, classes: Sequence[str] | None) -> list[str]:
    if classes is not None:
        return list(classes)
    return sorted({str(v) for v in values})


def count_table(
    table: pd.DataFrame,
    sample_col: str = "sample",
    class_col: str = "class",
    classes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Counts, rows = samples (in order of appearance), columns = classes."""
    _check_columns(table, sample_col, class_col)
    calls = _classified(table, class_col)
    classes = _class_order(calls[class_col], classes)
    samples = list(dict.fromkeys(calls[sample_col].astype(str)))
    counts = pd.crosstab(calls[sample_col].astype(str), calls[class_col])
    return counts.reindex(index=samples, columns=classes, fill_value=0).astype(int)


def class_probabilities(table: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame | None:
    """Per-object class probabilities from the ``p_<class>`` columns (rows normalised), or None
    when a column is missing or a value is not finite. An object called by the chromatid-pair
    rule (``called_by == "chromatid pair"``) counts wholly for its called class."""
    columns = [f"p_{c}" for c in classes]
    if not classes or any(c not in table.columns for c in columns):
        return None
    prob = table[columns].to_numpy(dtype=float, na_value=np.nan)
    if len(prob) and (not np.isfinite(prob).all() or (prob < 0).any()):
        return None
    prob = prob / np.maximum(prob.sum(1, keepdims=True), 1e-300)
    if "called_by" in table.columns:
        rule = (table["called_by"].astype(str) == "chromatid pair").to_numpy()
        called = table["class"].astype(str).to_numpy() if "class" in table.columns else None
        if called is not None and rule.any():
            index = {c: j for j, c in enumerate(classes)}
            for i in np.flatnonzero(rule):
                if called[i] in index:
                    prob[i] = 0.0
                    prob[i, index[called[i]]] = 1.0
    return pd.DataFrame(prob, columns=list(classes), index=table.index)


def _sample_spreads(
    calls: pd.DataFrame, sample: str, sample_col: str, spread_col: str | None
) -> tuple[pd.DataFrame, pd.Series]:
    """One sample's calls and the spread of each (as text; ``"all"`` for every call when the
    table has no spread column)."""
    sub = calls[calls[sample_col].astype(str) == str(sample)]
    if spread_col is None or spread_col not in calls.columns:
        return sub, pd.Series("all", index=sub.index)
    return sub, sub[spread_col].astype(str)


def spread_counts(
    calls: pd.DataFrame,
    sample: str,
    sample_col: str,
    class_col: str,
    spread_col: str | None,
    classes: Sequence[str],
) -> pd.DataFrame:
    """Counts of one sample's classified calls, rows = spreads, columns = ``classes``; a single
    row (the whole sample) when there is no spread column."""
    sub, groups = _sample_spreads(calls, sample, sample_col, spread_col)
    per = pd.crosstab(groups, sub[class_col].astype(str))
    return per.reindex(columns=[str(c) for c in classes], fill_value=0).astype(int)


def hand_corrected(calls: pd.DataFrame, sample: str, sample_col: str) -> int | None:
    """How many of a sample's calls were corrected by hand (the ``corrected`` column), or None
    when the table has no such column."""
    if HAND_CORRECTED not in calls.columns:
        return None
    sub = calls.loc[calls[sample_col].astype(str) == str(sample), HAND_CORRECTED]
    values = sub.map(lambda v: str(v).strip().lower() in ("true", "1", "yes", "1.0"))
    return int(values.sum())


def usable_confusion(
    calls: pd.DataFrame, classes: Sequence[str], confusion: Confusion | None
) -> tuple[Confusion | None, str | None]:
    """The confusion in the order of ``classes`` and, when it cannot be used, None and why. A
    soft confusion (mean probabilities) corrects the mean probability of each class, so it
    needs the table's ``p_<class>`` columns."""
    if confusion is None:
        return None, None
    confusion = _aligned(confusion, classes)
    if confusion.soft and class_probabilities(calls, [str(c) for c in classes]) is None:
        return None, (
            "Classifier error not included: the model stores only its soft out-of-fold "
            "confusion, which corrects mean class probabilities, and this table has no "
            "p_<class> columns. Give a hard confusion: --confusion crossval.json."
        )
    return confusion, None


def correction_counts(
    calls: pd.DataFrame,
    sample: str,
    sample_col: str,
    class_col: str,
    spread_col: str | None,
    classes: Sequence[str],
    confusion: Confusion | None,
) -> pd.DataFrame | None:
    """What the confusion corrects, per spread of one sample: the counts of calls (a hard
    confusion), or the sums of the class probabilities (a soft one); None without one."""
    if confusion is None:
        return None
    if not confusion.soft:
        return spread_counts(calls, sample, sample_col, class_col, spread_col, classes)
    sub, groups = _sample_spreads(calls, sample, sample_col, spread_col)
    prob = class_probabilities(sub, [str(c) for c in classes])
    return prob.groupby(groups).sum()


def _spread_aware(per_spread, alpha, confusion, seed, to_correct) -> dict[str, np.ndarray]:
    """share_low/high (spreads as replicates) and, with a confusion, the shares corrected for
    the classifier's error with their interval (percent)."""
    counts = per_spread.to_numpy(dtype=float)
    lo, hi = sample_interval(counts, alpha)
    out = {"share_low": 100 * lo, "share_high": 100 * hi}
    if confusion is not None:
        rng = np.random.default_rng(seed)
        fixes = to_correct.to_numpy(float)
        est, draws = cm.adjusted_shares(fixes, confusion, rng)
        a_lo, a_hi = cm.percentile_interval(draws, est, alpha)
        out.update(adjusted_percent=100 * est, adjusted_low=100 * a_lo, adjusted_high=100 * a_hi)
        fits = [
            cm.fit_p(row, confusion.rates, cm.correct_shares(row, confusion.rates)) for row in fixes
        ]
        out["spreads_misfit"] = np.full(len(est), sum(p < alpha for p in fits), dtype=float)
    return out


def _estimates(prob, calls, sample, sample_col, spread_col) -> dict[str, dict]:
    """est_percent (mean probability of each class) and, with spreads, spread_est_mean /
    spread_est_sd, as {column: {class: value}}; empty without probabilities."""
    if prob is None:
        return {}
    sample_prob = prob.loc[calls[sample_col].astype(str) == sample]
    out = {"est_percent": (sample_prob.mean() * 100).to_dict()}
    if spread_col is not None:
        spreads = calls.loc[sample_prob.index, spread_col].astype(str)
        spread_est = sample_prob.groupby(spreads).mean() * 100
        out["spread_est_mean"] = spread_est.mean().to_dict()
        out["spread_est_sd"] = (
            spread_est.std(ddof=1) if len(spread_est) > 1 else spread_est.mean() * np.nan
        ).to_dict()
    return out


def summarize(
    table: pd.DataFrame,
    sample_col: str = "sample",
    class_col: str = "class",
    spread_col: str | None = "spread",
    classes: Sequence[str] | None = None,
    alpha: float = 0.05,
    confusion: Confusion | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Long table, one row per (sample, class).

    Columns: ``sample, class, count, n, percent, ci_low, ci_high`` (Wilson over chromosomes,
    percent: treats chromosomes as independent), with the spread column ``n_spreads,
    spread_mean, spread_sd`` (mean ± SD over spreads of the per-spread percentage; SD is NaN for
    a single spread); always ``share_low, share_high``: the interval to quote, with spreads as
    replicates (Wilson at the effective size left by the spread-to-spread overdispersion, t
    quantile; the Wilson interval without spreads); with a ``confusion`` (the model's
    cross-validated confusion, aligned to these classes) ``adjusted_percent, adjusted_low,
    adjusted_high``: shares corrected for the classifier's error and their interval
    (:mod:`.confusion`) and ``spreads_misfit``, how many of the sample's spreads have calls the
    confusion cannot explain (:func:`.confusion.fit_p` < alpha: there the model errs otherwise
    than on its training crops); with a ``corrected`` column ``n_hand_corrected``.

    When the table has a ``p_<class>`` column for every class (``chromosort predict``, batch
    ``objects.csv``) it also gets ``est_percent`` (mean over the objects of their probability
    of the class: the expected share, which with the prior-adapted probabilities of
    ``predict --spreads`` is the spread's label-free estimate of its class distribution;
    docs/validation.md, Whole spreads) and with spreads ``spread_est_mean, spread_est_sd``.
    """
    counts = count_table(table, sample_col, class_col, classes)
    calls = _classified(table, class_col)
    confusion, _ = usable_confusion(calls, counts.columns, confusion)
    has_spreads = spread_col is not None and spread_col in table.columns
    prob = class_probabilities(calls, [str(c) for c in counts.columns])
    rows = []
    for sample in counts.index:
        n = int(counts.loc[sample].sum())
        lo, hi = wilson_interval(counts.loc[sample].to_numpy(), n, alpha)
        per_spread = spread_counts(
            calls,
            sample,
            sample_col,
            class_col,
            spread_col if has_spreads else None,
            counts.columns,
        )
        fractions = per_spread.div(per_spread.sum(axis=1), axis=0) * 100
        to_correct = correction_counts(
            calls, sample, sample_col, class_col, spread_col, counts.columns, confusion
        )
        aware = _spread_aware(per_spread, alpha, confusion, seed, to_correct)
        n_hand = hand_corrected(calls, sample, sample_col)
        estimates = _estimates(prob, calls, sample, sample_col, spread_col if has_spreads else None)
        for j, cls in enumerate(counts.columns):
            k = int(counts.loc[sample, cls])
            row = {
                "sample": sample,
                "class": cls,
                "count": k,
                "n": n,
                "percent": 100.0 * k / n if n else np.nan,
                "ci_low": 100.0 * lo[j],
                "ci_high": 100.0 * hi[j],
            }
            if has_spreads:
                row["n_spreads"] = len(fractions)
                row["spread_mean"] = float(fractions[cls].mean()) if len(fractions) else np.nan
                row["spread_sd"] = (
                    float(fractions[cls].std(ddof=1)) if len(fractions) > 1 else np.nan
                )
            row.update({key: float(values[j]) for key, values in aware.items()})
            if "spreads_misfit" in row:
                row["spreads_misfit"] = int(row["spreads_misfit"])
            if n_hand is not None:
                row["n_hand_corrected"] = n_hand
            row.update({key: values[cls] for key, values in estimates.items()})
            rows.append(row)
    return pd.DataFrame(rows)


def spread_summary(
    table: pd.DataFrame,
    sample_col: str = "sample",
    class_col: str = "class",
    spread_col: str = "spread",
    classes: Sequence[str] | None = None,
    alpha: float = 0.05,
    confusion: Confusion | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (sample, spread, class): ``count, n, percent, ci_low, ci_high`` (Wilson: a
    spread's chromosomes as a multinomial sample of that cell) and, with a ``confusion``,
    ``adjusted_percent, adjusted_low, adjusted_high`` (corrected for the classifier's error) and
    ``confusion_fit_p`` (:func:`.confusion.fit_p`: small = the confusion cannot explain the
    spread's calls, and its corrected shares are not to be trusted).
    Empty when the table has no spread column."""
    if spread_col not in table.columns:
        return pd.DataFrame()
    counts = count_table(table, sample_col, class_col, classes)
    calls = _classified(table, class_col)
    confusion, _ = usable_confusion(calls, counts.columns, confusion)
    rng = np.random.default_rng(seed)
    rows = []
    for sample in counts.index:
        per = spread_counts(calls, sample, sample_col, class_col, spread_col, counts.columns)
        fixes = correction_counts(
            calls, sample, sample_col, class_col, spread_col, counts.columns, confusion
        )
        for spread, values in per.iterrows():
            k = values.to_numpy(dtype=float)
            n = int(k.sum())
            lo, hi = wilson_interval(k, n, alpha)
            extra = {}
            if confusion is not None:
                fix = fixes.loc[spread].to_numpy(float)
                est, draws = cm.adjusted_shares(fix, confusion, rng)
                a_lo, a_hi = cm.percentile_interval(draws, est, alpha)
                extra = {"adjusted_percent": est, "adjusted_low": a_lo, "adjusted_high": a_hi}
                fit = cm.fit_p(fix, confusion.rates, est)
            for j, cls in enumerate(counts.columns):
                row = {
                    "sample": sample,
                    "spread": spread,
                    "class": cls,
                    "count": int(k[j]),
                    "n": n,
                    "percent": 100.0 * k[j] / n if n else np.nan,
                    "ci_low": 100.0 * lo[j],
                    "ci_high": 100.0 * hi[j],
                }
                row.update({key: 100.0 * float(v[j]) for key, v in extra.items()})
                if extra:
                    row["confusion_fit_p"] = fit
                rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ comparison


def compare_samples(
    table: pd.DataFrame,
    sample_a: str,
    sample_b: str,
    sample_col: str = "sample",
    class_col: str = "class",
    classes: Sequence[str] | None = None,
    **kwargs,
) -> Comparison:
    """Compare two samples of a calls table; see :func:`compare_counts` for the test."""
    counts = count_table(table, sample_col, class_col, classes)
    for s in (sample_a, sample_b):
        if s not in counts.index:
            raise ChromosortError(f"sample {s!r} not in table; samples: {list(counts.index)}")
    return compare_counts(
        counts.loc[sample_a].to_numpy(),
        counts.loc[sample_b].to_numpy(),
        list(counts.columns),
        names=(sample_a, sample_b),
        **kwargs,
    )


def compare_all(
    table: pd.DataFrame,
    sample_col: str = "sample",
    class_col: str = "class",
    classes: Sequence[str] | None = None,
    reference: str | None = None,
    spread_col: str | None = "spread",
    confusion: Confusion | None = None,
    **kwargs,
):
    """Every sample against ``reference`` (default: the first sample), or all pairs if
    ``reference == "all"``: a list of :class:`.compare.SampleComparison`, spreads as the
    replicates when the table has the spread column (else chromosomes, and the sentence says
    so). ``confusion`` (the model's cross-validated confusion) adds the shares corrected for the
    classifier's error; ``kwargs`` (``alpha``, ``method`` of the secondary per-chromosome test,
    ``n_permutations``, ``seed``) go to :func:`.compare.compare_pair`."""
    counts = count_table(table, sample_col, class_col, classes)
    samples = list(counts.index)
    if len(samples) < 2:
        return []
    if reference == "all":
        pairs = list(combinations(samples, 2))
    else:
        ref = reference or samples[0]
        if ref not in samples:
            raise ChromosortError(f"reference sample {ref!r} not in table; samples: {samples}")
        pairs = [(ref, s) for s in samples if s != ref]
    calls = _classified(table, class_col)
    confusion, why_not = usable_confusion(calls, counts.columns, confusion)
    has_spreads = spread_col is not None and spread_col in table.columns
    spread_col = spread_col if has_spreads else None
    args = (sample_col, class_col, spread_col, counts.columns)
    per = {s: spread_counts(calls, s, *args) for s in samples}
    fixes = {s: correction_counts(calls, s, *args, confusion) for s in samples}
    hand = {s: hand_corrected(calls, s, sample_col) for s in samples}
    return [
        compare_pair(
            per[a],
            per[b],
            (a, b),
            has_spreads,
            confusion,
            (hand[a], hand[b]),
            to_correct=None if confusion is None else (fixes[a], fixes[b]),
            why_not=why_not,
            **kwargs,
        )
        for a, b in pairs
    ]


def _aligned(confusion: Confusion, classes) -> Confusion:
    aligned = confusion.aligned([str(c) for c in classes])
    if aligned is None:
        raise ChromosortError(
            f"the confusion's classes {confusion.classes} are not the calls' classes "
            f"{[str(c) for c in classes]}: give the model that made these calls"
        )
    return aligned


def comparison_lines(table, comparisons, *_, **__) -> list[str]:
    """The readout's text: each comparison's sentence (headline, largest change, secondary
    per-chromosome test, classifier's error, calls corrected by hand)."""
    return [comp.sentence for comp in comparisons] or ["only one sample: no comparison"]


def calls_from_folder(root, sample: str | None = None) -> pd.DataFrame:
    """Calls table from a folder-per-class tree (``root/<class>/<image>``): the folder is the call.

    With ``root/<sample>/<class>/<image>`` (two levels) and ``sample=None`` every sub-folder is a
    sample.
    """
    from pathlib import Path

    root = Path(root)
    exts = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
    rows = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in exts or not path.is_file():
            continue
        rel = path.relative_to(root).parts
        if len(rel) == 2:
            rows.append({"sample": sample or root.name, "class": rel[0], "file": str(path)})
        elif len(rel) == 3:
            rows.append({"sample": sample or rel[0], "class": rel[1], "file": str(path)})
    if not rows:
        raise ChromosortError(f"no images in class folders below {root}")
    return pd.DataFrame(rows)
