"""The per-chromosome comparison of two samples: Pearson chi-square (or its permutation version
for small counts) on the 2 x k table of calls, with Cramér's V. It counts chromosomes as
replicates, which they are not within a spread: the readout shows it only as a labelled
secondary figure beside the spread-level test (:mod:`.compare`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from napari_chromosome_sort.errors import ChromosortError


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


def _permutation_p(table: np.ndarray, stat: float, n_permutations: int, seed: int) -> float:
    """Monte-Carlo p of the chi-square statistic ``stat`` of the 2 x k ``table`` under random
    re-assignment of its pooled objects to the two rows (vectorised in blocks of draws)."""
    rng = np.random.default_rng(seed)
    n_a, n = int(table[0].sum()), int(table.sum())
    pooled = np.repeat(np.arange(table.shape[1]), table.sum(0))
    col = table.sum(0).astype(float)
    exp = np.array([n_a, n - n_a], dtype=float)[:, None] * col[None, :] / n
    exceed, done = 0, 0
    while done < n_permutations:
        m = min(500, n_permutations - done)
        idx = np.argpartition(rng.random((m, n)), n_a - 1, axis=1)[:, :n_a]
        a_counts = np.stack([np.bincount(pooled[i], minlength=len(col)) for i in idx]).astype(float)
        b_counts = col[None, :] - a_counts
        with np.errstate(invalid="ignore", divide="ignore"):
            s = ((a_counts - exp[0]) ** 2 / exp[0]).sum(1) + (
                (b_counts - exp[1]) ** 2 / exp[1]
            ).sum(1)
        exceed += int((s >= stat - 1e-9).sum())
        done += m
    return (exceed + 1) / (n_permutations + 1)


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
            p = _permutation_p(table_k, stat, n_permutations, seed)
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
