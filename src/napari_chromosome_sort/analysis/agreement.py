"""Annotator agreement (Ikemoto et al. (2022)'s Fig. 1B): pairwise concordance and Cohen's kappa."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from napari_chromosome_sort.errors import ChromosortError


def _check_columns(table: pd.DataFrame, *columns: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ChromosortError(
            f"agreement table lacks column(s) {missing}; it has {list(table.columns)}"
        )


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
