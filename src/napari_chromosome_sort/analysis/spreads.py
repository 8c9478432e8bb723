"""Comparing samples with spreads as the replicates.

Chromosomes of one spread come from one cell and share its state, so they are not independent:
a test that counts chromosomes as replicates calls two samples different when two of their
cells simply differ. Here the unit is the spread:

* **test**: the chi-square statistic of the two samples' pooled calls, with its null
  distribution from re-assigning whole spreads to the two samples (every assignment when there
  are at most ``MAX_EXACT``, else random ones). With m_a and m_b spreads the smallest p it can
  give is 1 / C(m_a + m_b, m_a) (twice that when m_a = m_b): 1/3 for 2 vs 2, 0.1 for 3 vs 3,
  0.008 for 5 vs 5. Too few spreads cannot show a difference, whatever the chromosome counts.
* **effect sizes**: the difference in each type's share (and in the "open" share, B + C = not
  A), with a quasi-binomial interval: the binomial variance times the overdispersion estimated
  from the spreads' variation (at least 1), and Student's t on its degrees of freedom.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from math import comb

import numpy as np
import pandas as pd

from napari_chromosome_sort.analysis import confusion as cm

MAX_EXACT = 20000


def chi2_statistics(a_counts: np.ndarray, b_counts: np.ndarray) -> np.ndarray:
    """Pearson chi-square of 2 x k tables given as rows (draws, k) of the two samples' counts."""
    a = np.atleast_2d(np.asarray(a_counts, dtype=float))
    b = np.atleast_2d(np.asarray(b_counts, dtype=float))
    col = a + b
    n_a, n_b = a.sum(1, keepdims=True), b.sum(1, keepdims=True)
    n = n_a + n_b
    with np.errstate(invalid="ignore", divide="ignore"):
        e_a, e_b = n_a * col / n, n_b * col / n
        terms = np.where(e_a > 0, (a - e_a) ** 2 / e_a, 0.0) + np.where(
            e_b > 0, (b - e_b) ** 2 / e_b, 0.0
        )
    return terms.sum(1)


def smallest_p(m_a: int, m_b: int) -> float:
    """The smallest two-sided p a permutation over ``m_a`` vs ``m_b`` spreads can give."""
    total = comb(m_a + m_b, m_a)
    return min(1.0, (2 if m_a == m_b else 1) / total)


def permutation_over_spreads(
    counts_a: np.ndarray,
    counts_b: np.ndarray,
    n_permutations: int = 10000,
    seed: int = 0,
) -> tuple[float, float, str]:
    """(statistic, p, method) of the spread permutation test (``counts_*``: spreads x classes).

    Exact (every assignment of the spreads to the two samples, the observed one included) when
    there are at most ``MAX_EXACT`` assignments, else ``n_permutations`` random assignments with
    p = (exceeding + 1) / (draws + 1)."""
    counts_a = np.atleast_2d(np.asarray(counts_a, dtype=float))
    counts_b = np.atleast_2d(np.asarray(counts_b, dtype=float))
    pooled = np.vstack([counts_a, counts_b])
    m, m_a = len(pooled), len(counts_a)
    total = pooled.sum(0)
    observed = float(chi2_statistics(counts_a.sum(0), counts_b.sum(0))[0])
    n_assign = comb(m, m_a)
    if n_assign <= MAX_EXACT:
        members = np.zeros((n_assign, m))
        for row, chosen in enumerate(combinations(range(m), m_a)):
            members[row, list(chosen)] = 1
        method = f"exact, all {n_assign} assignments"
    else:
        rng = np.random.default_rng(seed)
        keys = rng.random((n_permutations, m))
        chosen = np.argpartition(keys, m_a - 1, axis=1)[:, :m_a]
        members = np.zeros((n_permutations, m))
        np.put_along_axis(members, chosen, 1, axis=1)
        method = f"{n_permutations} random assignments"
    a = members @ pooled
    values = chi2_statistics(a, total[None, :] - a)
    exceed = int((values >= observed - 1e-9 * max(1.0, observed)).sum())
    exact = n_assign <= MAX_EXACT
    p = exceed / n_assign if exact else (exceed + 1) / (n_permutations + 1)
    return observed, float(min(1.0, p)), method


def open_index(classes: Sequence[str]) -> int | None:
    """Index of the class named A (any case) when there are 3+ classes: the "open" share is
    then everything but A (B + C); None otherwise."""
    names = [str(c).lower() for c in classes]
    return names.index("a") if "a" in names and len(names) >= 3 else None


def share_groups(classes: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    """(name, 0/1 membership over the classes): each class, and "open (not A)" when it exists."""
    k = len(classes)
    groups = [(str(c), np.eye(k)[j]) for j, c in enumerate(classes)]
    a = open_index(classes)
    if a is not None:
        rest = [str(c) for j, c in enumerate(classes) if j != a]
        groups.append(("+".join(rest) + " (open)", 1.0 - np.eye(k)[a]))
    return groups


def quasi_binomial(counts: np.ndarray, member: np.ndarray) -> tuple[float, float, float, int]:
    """(share, variance, overdispersion phi, its degrees of freedom) of one share (the classes
    in ``member``) of a sample (``counts``: spreads x classes): variance = phi p(1 - p) / n,
    p in the variance taken as (k + 1) / (n + 2) so that 0 % and 100 % keep a width."""
    counts = np.atleast_2d(np.asarray(counts, dtype=float))
    k_i, n_i = counts @ member, counts.sum(1)
    n = n_i.sum()
    share = k_i.sum() / n if n else np.nan
    phi, df = cm.overdispersion(np.column_stack([k_i, n_i - k_i]))
    p = (k_i.sum() + 1) / (n + 2)
    return float(share), float(phi * p * (1 - p) / max(n, 1)), phi, df


def welch_df(v_a: float, df_a: int, v_b: float, df_b: int) -> float:
    """Welch-Satterthwaite degrees of freedom of a difference (0 = unknown: a side has none)."""
    if df_a <= 0 or df_b <= 0:
        return 0.0
    den = v_a**2 / df_a + v_b**2 / df_b
    return float((v_a + v_b) ** 2 / den) if den > 0 else float(df_a + df_b)


def effect_table(
    counts_a: np.ndarray,
    counts_b: np.ndarray,
    classes: Sequence[str],
    alpha: float = 0.05,
    confusion: cm.Confusion | None = None,
    draws: int = cm.DRAWS,
    seed: int = 0,
    to_correct: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """One row per share (each class, and "open"): ``share_a, share_b, difference, low, high``
    (percent and percentage points; quasi-binomial, spreads as replicates, t on Welch's degrees
    of freedom, normal where a sample has one spread) and, with a ``confusion``, the same for
    the shares corrected for the classifier's error (``adjusted_*``; bootstrap with independent
    draws of the confusion for each sample) and ``within_model_error`` (its interval holds 0).
    ``to_correct``: what the confusion corrects (spreads x classes per sample; default the
    counts)."""
    rows = []
    if confusion is not None:
        rng = np.random.default_rng(seed)
        fix_a, fix_b = to_correct or (counts_a, counts_b)
        est_a, draws_a = cm.adjusted_shares(fix_a, confusion, rng, draws)
        est_b, draws_b = cm.adjusted_shares(fix_b, confusion, rng, draws)
    for name, member in share_groups(classes):
        p_a, v_a, _, df_a = quasi_binomial(counts_a, member)
        p_b, v_b, _, df_b = quasi_binomial(counts_b, member)
        diff = p_b - p_a
        half = cm.t_quantile(welch_df(v_a, df_a, v_b, df_b), alpha) * np.sqrt(v_a + v_b)
        row = {
            "share": name,
            "share_a": 100 * p_a,
            "share_b": 100 * p_b,
            "difference": 100 * diff,
            "low": 100 * max(-1.0, diff - half),
            "high": 100 * min(1.0, diff + half),
        }
        if confusion is not None:
            d = draws_b @ member - draws_a @ member
            est = float(est_b @ member - est_a @ member)
            lo, hi = cm.percentile_interval(d[:, None], np.array([est]), alpha)
            row.update(
                adjusted_a=100 * float(est_a @ member),
                adjusted_b=100 * float(est_b @ member),
                adjusted_difference=100 * est,
                adjusted_low=100 * float(lo[0]),
                adjusted_high=100 * float(hi[0]),
                within_model_error=bool(lo[0] <= 0 <= hi[0]),
            )
        rows.append(row)
    return pd.DataFrame(rows)


def wilson(k: float, n: float, z: float) -> tuple[float, float]:
    """Wilson score interval of ``k / n`` at quantile ``z`` (n may be fractional)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return float(np.clip(centre - half, 0, 1)), float(np.clip(centre + half, 0, 1))


def sample_interval(counts: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Per class, a spread-aware interval of a sample's share (fractions): Wilson's interval at
    the effective size n / phi with Student's t (on phi's degrees of freedom) in place of z."""
    counts = np.atleast_2d(np.asarray(counts, dtype=float))
    n = counts.sum()
    bounds = []
    for j in range(counts.shape[1]):
        _, _, phi, df = quasi_binomial(counts, np.eye(counts.shape[1])[j])
        bounds.append(wilson(counts[:, j].sum() / phi, n / phi, cm.t_quantile(df, alpha)))
    lows, highs = zip(*bounds, strict=True) if bounds else ((), ())
    return np.array(lows, dtype=float), np.array(highs, dtype=float)
