"""Per-sample readout: class distributions with CIs, per-spread variation, sample comparison,
annotator agreement. Qt-free and torch-free (numpy, scipy, pandas, scikit-learn only).

A *calls table* is any DataFrame with one row per classified object and at least a sample column
(default ``sample``) and a class column (default ``class``); an optional spread column (default
``spread``) groups objects into spreads for the per-spread variation. Rows whose class is missing
(e.g. nuclei and debris in ``objects.csv``) are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import ChromosortError

# The seed paper's biology (Ikemoto et al. 2022): type distribution in WT vs CTF18-/- TK6 cells.
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


def summarize(
    table: pd.DataFrame,
    sample_col: str = "sample",
    class_col: str = "class",
    spread_col: str | None = "spread",
    classes: Sequence[str] | None = None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Long table, one row per (sample, class).

    Columns: ``sample, class, count, n, percent, ci_low, ci_high`` (Wilson, percent), and when
    the spread column exists ``n_spreads, spread_mean, spread_sd`` (mean ± SD over spreads of the
    per-spread percentage; SD is NaN for a single spread).

    When the table has a ``p_<class>`` column for every class (``chromosort predict``, batch
    ``objects.csv``) it also gets ``est_percent`` (mean over the objects of their probability
    of the class: the expected share, which with the prior-adapted probabilities of
    ``predict --spreads`` is the spread's label-free estimate of its class distribution;
    docs/validation.md, Whole spreads) and with spreads ``spread_est_mean, spread_est_sd``.
    """
    counts = count_table(table, sample_col, class_col, classes)
    calls = _classified(table, class_col)
    has_spreads = spread_col is not None and spread_col in table.columns
    prob = class_probabilities(calls, [str(c) for c in counts.columns])
    rows = []
    for sample in counts.index:
        n = int(counts.loc[sample].sum())
        lo, hi = wilson_interval(counts.loc[sample].to_numpy(), n, alpha)
        if has_spreads:
            sub = calls[calls[sample_col].astype(str) == sample]
            per_spread = pd.crosstab(sub[spread_col].astype(str), sub[class_col])
            per_spread = per_spread.reindex(columns=counts.columns, fill_value=0)
            fractions = per_spread.div(per_spread.sum(axis=1), axis=0) * 100
        if prob is not None:
            sample_prob = prob.loc[calls[sample_col].astype(str) == sample]
            est = sample_prob.mean() * 100
            if has_spreads:
                spreads = calls.loc[sample_prob.index, spread_col].astype(str)
                spread_est = sample_prob.groupby(spreads).mean() * 100
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
            if prob is not None:
                row["est_percent"] = float(est[cls]) if n else np.nan
                if has_spreads:
                    col = spread_est[cls]
                    row["spread_est_mean"] = float(col.mean()) if len(col) else np.nan
                    row["spread_est_sd"] = float(col.std(ddof=1)) if len(col) > 1 else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ comparison


@dataclass
class Comparison:
    """Result of :func:`compare_samples`."""

    sample_a: str
    sample_b: str
    n_a: int
    n_b: int
    test: str
    statistic: float
    dof: int
    p_value: float
    cramers_v: float
    alpha: float
    significant: bool
    percent_a: dict[str, float] = field(default_factory=dict)
    percent_b: dict[str, float] = field(default_factory=dict)
    sentence: str = ""

    def as_dict(self) -> dict:
        """The fields as a flat dict, with one ``percent_a_<class>`` / ``percent_b_<class>`` key per
        class."""
        out = asdict(self)
        for key in ("percent_a", "percent_b"):
            out.update({f"{key}_{k}": v for k, v in out.pop(key).items()})
        return out


def _chi2_stat(table: np.ndarray) -> float:
    table = np.asarray(table, dtype=float)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(expected > 0, (table - expected) ** 2 / expected, 0.0)
    return float(terms.sum())


def _effect_word(v: float) -> str:
    # Cohen's conventions for df* = 1 (two samples).
    if v < 0.1:
        return "negligible"
    if v < 0.3:
        return "small"
    if v < 0.5:
        return "medium"
    return "large"


def _format_p(p: float) -> str:
    return f"p = {p:.2g}" if p >= 1e-4 else "p < 0.0001"


def compare_counts(
    counts_a: Sequence[int],
    counts_b: Sequence[int],
    classes: Sequence[str],
    names: tuple[str, str] = ("A", "B"),
    method: str = "auto",
    alpha: float = 0.05,
    n_permutations: int = 10000,
    seed: int = 0,
) -> Comparison:
    """Test whether two samples' class distributions differ (2 x k contingency table).

    ``method``: ``"chi2"`` (Pearson chi-square, no continuity correction), ``"permutation"``
    (Monte-Carlo exact test: the chi-square statistic under random reassignment of the pooled
    objects to the two samples, ``n_permutations`` draws), or ``"auto"`` (chi-square when every
    expected count is >= 5, else permutation). Classes absent from both samples are dropped.
    Effect size: Cramér's V = sqrt(chi2 / n) (two samples).
    """
    table = np.array([counts_a, counts_b], dtype=np.int64)
    if table.shape[1] != len(classes):
        raise ChromosortError("counts and classes have different lengths")
    keep = table.sum(0) > 0
    n_a, n_b = int(table[0].sum()), int(table[1].sum())
    if n_a == 0 or n_b == 0:
        raise ChromosortError(
            f"cannot compare: sample {names[0] if n_a == 0 else names[1]} has no classified objects"
        )
    pct_a = {c: 100.0 * table[0, j] / n_a for j, c in enumerate(classes)}
    pct_b = {c: 100.0 * table[1, j] / n_b for j, c in enumerate(classes)}
    table_k = table[:, keep]
    n = n_a + n_b
    if table_k.shape[1] < 2:
        stat, p, dof, used = 0.0, 1.0, 0, "none (one class only)"
    else:
        stat = _chi2_stat(table_k)
        dof = table_k.shape[1] - 1
        expected = table_k.sum(1, keepdims=True) * table_k.sum(0, keepdims=True) / n
        if method not in ("auto", "chi2", "permutation"):
            raise ChromosortError(f"unknown test method {method!r}; use auto, chi2 or permutation")
        use_perm = method == "permutation" or (method == "auto" and expected.min() < 5)
        if use_perm:
            rng = np.random.default_rng(seed)
            pooled = np.repeat(np.arange(table_k.shape[1]), table_k.sum(0))
            col = table_k.sum(0).astype(float)
            row = np.array([n_a, n_b], dtype=float)
            exp = row[:, None] * col[None, :] / n
            exceed = 0
            # Vectorised in blocks: each draw = a random subset of size n_a forms sample A.
            block = 500
            done = 0
            while done < n_permutations:
                m = min(block, n_permutations - done)
                keys = rng.random((m, n))
                idx = np.argpartition(keys, n_a - 1, axis=1)[:, :n_a]
                a_counts = np.stack(
                    [np.bincount(pooled[i], minlength=len(col)) for i in idx]
                ).astype(float)
                b_counts = col[None, :] - a_counts
                with np.errstate(invalid="ignore", divide="ignore"):
                    s = ((a_counts - exp[0]) ** 2 / exp[0]).sum(1) + (
                        (b_counts - exp[1]) ** 2 / exp[1]
                    ).sum(1)
                exceed += int((s >= stat - 1e-9).sum())
                done += m
            p = (exceed + 1) / (n_permutations + 1)
            used = f"permutation chi-square ({n_permutations} draws)"
        else:
            p = float(stats.chi2.sf(stat, dof))
            used = "chi-square"
    v = float(np.sqrt(stat / n)) if n else 0.0
    significant = bool(p < alpha)
    diffs = {c: pct_b[c] - pct_a[c] for c in classes}
    biggest = sorted(diffs, key=lambda c: -abs(diffs[c]))[:2]
    changes = ", ".join(f"{c} {pct_a[c]:.1f}% → {pct_b[c]:.1f}%" for c in biggest)
    verdict = "differ in" if significant else "show no significant difference in"
    sentence = (
        f"{names[0]} (n = {n_a}) and {names[1]} (n = {n_b}) {verdict} type distribution "
        f"({used}: statistic = {stat:.2f}, df = {dof}, {_format_p(p)}; "
        f"Cramér's V = {v:.2f}, a {_effect_word(v)} effect). Largest changes: {changes}."
    )
    return Comparison(
        sample_a=names[0],
        sample_b=names[1],
        n_a=n_a,
        n_b=n_b,
        test=used,
        statistic=stat,
        dof=dof,
        p_value=float(p),
        cramers_v=v,
        alpha=alpha,
        significant=significant,
        percent_a=pct_a,
        percent_b=pct_b,
        sentence=sentence,
    )


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
    **kwargs,
) -> list[Comparison]:
    """Every sample against ``reference`` (default: the first sample), or all pairs if
    ``reference == "all"``."""
    counts = count_table(table, sample_col, class_col, classes)
    samples = list(counts.index)
    if len(samples) < 2:
        return []
    if reference == "all":
        pairs = list(combinations(samples, 2))
    else:
        ref = reference or samples[0]
        pairs = [(ref, s) for s in samples if s != ref]
    return [
        compare_counts(
            counts.loc[a].to_numpy(),
            counts.loc[b].to_numpy(),
            list(counts.columns),
            (a, b),
            **kwargs,
        )
        for a, b in pairs
    ]


# ------------------------------------------------------------------ agreement


def cohen_kappa(a: Sequence, b: Sequence) -> float:
    """Cohen's kappa of two raters' labels of the same items (NaN-free inputs)."""
    a = np.asarray(a).astype(str)
    b = np.asarray(b).astype(str)
    labels = np.unique(np.concatenate([a, b]))
    index = {c: i for i, c in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)))
    for x, y in zip(a, b, strict=True):
        m[index[x], index[y]] += 1
    n = m.sum()
    if n == 0:
        return float("nan")
    po = np.trace(m) / n
    pe = (m.sum(0) * m.sum(1)).sum() / n**2
    if pe >= 1:
        return 1.0 if po >= 1 else 0.0
    return float((po - pe) / (1 - pe))


def agreement(labels: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pairwise concordance (fraction of identical calls) and Cohen's kappa between annotators.

    ``labels``: one row per crop, one column per annotator (missing calls allowed: each pair uses
    the crops both annotators labelled). Returns two square DataFrames (annotator x annotator).
    """
    raters = list(labels.columns)
    if len(raters) < 2:
        raise ChromosortError("agreement needs labels from at least two annotators (columns)")
    conc = pd.DataFrame(np.eye(len(raters)), index=raters, columns=raters)
    kappa = conc.copy()
    for r1, r2 in combinations(raters, 2):
        both = labels[[r1, r2]].dropna()
        a, b = both[r1].astype(str).to_numpy(), both[r2].astype(str).to_numpy()
        c = float((a == b).mean()) if len(a) else np.nan
        k = cohen_kappa(a, b) if len(a) else np.nan
        conc.loc[r1, r2] = conc.loc[r2, r1] = c
        kappa.loc[r1, r2] = kappa.loc[r2, r1] = k
    return conc, kappa


def agreement_from_long(
    table: pd.DataFrame,
    item_col: str = "file",
    annotator_col: str = "annotator",
    class_col: str = "class",
) -> pd.DataFrame:
    """Long (item, annotator, class) table -> wide item x annotator table for :func:`agreement`."""
    _check_columns(table, item_col, annotator_col, class_col)
    return table.pivot_table(
        index=item_col, columns=annotator_col, values=class_col, aggfunc="first"
    )


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


def compare_spreads(
    table: pd.DataFrame,
    sample_a: str,
    sample_b: str,
    sample_col: str = "sample",
    class_col: str = "class",
    spread_col: str = "spread",
    classes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Spread-level check of a difference: per class, a two-sided Mann-Whitney U test of the
    per-spread percentages of the two samples (each spread counts once, so chromosomes of one
    cell are not treated as independent). Columns: ``class, mean_a, mean_b, n_spreads_a,
    n_spreads_b, u, p_value``. Needs >= 2 spreads per sample (p is NaN otherwise); with < 4
    spreads per sample no p-value below 0.05 is possible."""
    _check_columns(table, sample_col, class_col, spread_col)
    calls = _classified(table, class_col)
    classes = _class_order(calls[class_col], classes)
    fractions = {}
    for s in (sample_a, sample_b):
        sub = calls[calls[sample_col].astype(str) == s]
        if sub.empty:
            raise ChromosortError(f"sample {s!r} has no classified objects")
        per = pd.crosstab(sub[spread_col].astype(str), sub[class_col]).reindex(
            columns=classes, fill_value=0
        )
        fractions[s] = per.div(per.sum(axis=1), axis=0) * 100
    rows = []
    fa, fb = fractions[sample_a], fractions[sample_b]
    for cls in classes:
        a, b = fa[cls].to_numpy(), fb[cls].to_numpy()
        if len(a) >= 2 and len(b) >= 2 and np.ptp(np.concatenate([a, b])) > 0:
            res = stats.mannwhitneyu(a, b, alternative="two-sided")
            u, p = float(res.statistic), float(res.pvalue)
        else:
            u, p = np.nan, np.nan
        rows.append(
            {
                "class": cls,
                "mean_a": float(a.mean()),
                "mean_b": float(b.mean()),
                "n_spreads_a": len(a),
                "n_spreads_b": len(b),
                "u": u,
                "p_value": p,
            }
        )
    return pd.DataFrame(rows)


def spread_sentence(result: pd.DataFrame) -> str:
    """One line summarising :func:`compare_spreads`."""
    if result.empty:
        return ""
    n_a, n_b = int(result["n_spreads_a"].iloc[0]), int(result["n_spreads_b"].iloc[0])
    parts = [
        f"{r['class']} {r['mean_a']:.1f}% vs {r['mean_b']:.1f}% "
        + ("(p n/a)" if np.isnan(r["p_value"]) else f"({_format_p(r['p_value'])})")
        for _, r in result.iterrows()
    ]
    return (
        f"  Spread level (Mann-Whitney U on per-spread %, {n_a} vs {n_b} spreads): "
        + "; ".join(parts)
        + "."
    )


def comparison_lines(
    table: pd.DataFrame,
    comparisons,
    sample_col="sample",
    class_col="class",
    spread_col="spread",
    classes=None,
) -> list[str]:
    """The sentences of ``comparisons`` each followed by its spread-level line (if spreads)."""
    lines = []
    for comp in comparisons:
        lines.append(comp.sentence)
        if spread_col and spread_col in table.columns:
            res = compare_spreads(
                table, comp.sample_a, comp.sample_b, sample_col, class_col, spread_col, classes
            )
            lines.append(spread_sentence(res))
    return lines or ["only one sample: no comparison"]
