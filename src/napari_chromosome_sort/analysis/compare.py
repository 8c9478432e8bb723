"""The headline comparison of two samples: spreads as the replicates (:mod:`.spreads`), effect
sizes with intervals, the classifier's error (:mod:`.confusion`), and the per-chromosome
chi-square only as a labelled secondary figure."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from napari_chromosome_sort.analysis import spreads as sp
from napari_chromosome_sort.analysis.chromosome_test import Comparison, _format_p, compare_counts
from napari_chromosome_sort.analysis.confusion import Confusion, correct_shares, fit_p

NO_CONFUSION = (
    "Classifier error not included: no cross-validated confusion of the model was given "
    "(chromosort readout --model MODEL or --confusion crossval.json), so the intervals cover "
    "counting and spread-to-spread variation only."
)


@dataclass
class SampleComparison:
    """Result of :func:`compare_pair`: the spread-level test (``p_value``, ``significant``),
    the effect sizes (``effects``, :func:`.spreads.effect_table`) and the secondary
    per-chromosome test (``secondary``)."""

    sample_a: str
    sample_b: str
    n_spreads_a: int
    n_spreads_b: int
    n_a: int
    n_b: int
    replicates: str
    test: str
    statistic: float
    p_value: float
    smallest_p: float
    alpha: float
    significant: bool
    secondary: Comparison
    effects: pd.DataFrame = field(default_factory=pd.DataFrame)
    hand_corrected_a: int | None = None
    hand_corrected_b: int | None = None
    classifier_error: str = NO_CONFUSION
    sentence: str = ""

    @property
    def percent_a(self) -> dict[str, float]:
        """Call shares of sample a (percent), per class."""
        return self.secondary.percent_a

    @property
    def percent_b(self) -> dict[str, float]:
        """Call shares of sample b (percent), per class."""
        return self.secondary.percent_b

    def as_dict(self) -> dict:
        """One flat row: the headline fields, each share's difference and interval
        (``difference_<share>``, ``low_<share>``, ``high_<share>``, ``adjusted_…``) and the
        secondary test's fields prefixed ``chromosomes_``."""
        out = {
            key: getattr(self, key)
            for key in (
                "sample_a",
                "sample_b",
                "n_spreads_a",
                "n_spreads_b",
                "n_a",
                "n_b",
                "replicates",
                "test",
                "statistic",
                "p_value",
                "smallest_p",
                "alpha",
                "significant",
                "hand_corrected_a",
                "hand_corrected_b",
                "classifier_error",
            )
        }
        for _, row in self.effects.iterrows():
            for key, value in row.items():
                if key != "share":
                    out[f"{key}_{row['share']}"] = value
        secondary = self.secondary.as_dict()
        for key in ("test", "statistic", "dof", "p_value", "cramers_v", "significant"):
            out[f"chromosomes_{key}"] = secondary[key]
        out["sentence"] = self.sentence
        return out


def compare_pair(
    counts_a: pd.DataFrame,
    counts_b: pd.DataFrame,
    names: tuple[str, str],
    has_spreads: bool = True,
    confusion: Confusion | None = None,
    hand: tuple[int | None, int | None] = (None, None),
    to_correct: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    why_not: str | None = None,
    alpha: float = 0.05,
    method: str = "auto",
    n_permutations: int = 10000,
    seed: int = 0,
) -> SampleComparison:
    """Compare two samples given their calls per spread (rows = spreads, columns = classes).

    Without spreads (``has_spreads`` False) the chromosomes are the replicates, and the sentence
    says so. ``to_correct``: what the ``confusion`` corrects per spread (the calls' counts by
    default; the sums of the class probabilities for a soft confusion); ``why_not``: why no
    confusion could be used. ``method`` is the secondary per-chromosome test's (see
    ``compare_counts``)."""
    classes = [str(c) for c in counts_a.columns]
    a = counts_a.to_numpy(dtype=float)
    b = counts_b.to_numpy(dtype=float)
    a, b = a[a.sum(1) > 0], b[b.sum(1) > 0]
    secondary = compare_counts(
        a.sum(0).astype(int),
        b.sum(0).astype(int),
        classes,
        names,
        method=method,
        alpha=alpha,
        n_permutations=n_permutations,
        seed=seed,
    )
    if has_spreads:
        statistic, p, how = sp.permutation_over_spreads(a, b, n_permutations, seed)
        test = f"permutation test over spreads ({how})"
        smallest = sp.smallest_p(len(a), len(b))
    else:
        statistic, p, test, smallest = secondary.statistic, secondary.p_value, secondary.test, 0.0
    fixes = None
    if confusion is not None:
        pair = to_correct or (counts_a, counts_b)
        fixes = tuple(f.to_numpy(dtype=float) for f in pair)
        fixes = tuple(f[f.sum(1) > 0] for f in fixes)
    effects = sp.effect_table(a, b, classes, alpha, confusion, seed=seed, to_correct=fixes)
    comp = SampleComparison(
        sample_a=names[0],
        sample_b=names[1],
        n_spreads_a=len(a),
        n_spreads_b=len(b),
        n_a=int(a.sum()),
        n_b=int(b.sum()),
        replicates="spreads" if has_spreads else "chromosomes",
        test=test,
        statistic=float(statistic),
        p_value=float(p),
        smallest_p=float(smallest),
        alpha=alpha,
        significant=bool(p < alpha),
        secondary=secondary,
        effects=effects,
        hand_corrected_a=hand[0],
        hand_corrected_b=hand[1],
        classifier_error=(why_not or NO_CONFUSION)
        if confusion is None
        else _confusion_line(confusion, names, fixes, alpha),
    )
    comp.sentence = sentence(comp)
    return comp


def _confusion_line(confusion: Confusion, names, fixes, alpha: float) -> str:
    line = "Classifier error included: " + confusion.describe() + "."
    if confusion.soft:
        line += " It corrects the mean class probabilities (p_<class> columns)."
    rates = confusion.rates
    for name, rows in zip(names, fixes, strict=True):
        bad = sum(fit_p(r, rates, correct_shares(r, rates)) < alpha for r in rows)
        if bad:
            line += (
                f" The model's confusion cannot explain the calls of {bad} of {len(rows)} "
                f"spreads of {name} (G-test p < {alpha:g}): there the model errs otherwise than "
                "on its training crops, and the corrected shares are not to be trusted."
            )
    return " ".join([line, *[f"Note: {n}." for n in confusion.notes]])


def _spreads(n: int) -> str:
    return f"{n} spread" if n == 1 else f"{n} spreads"


def _points(value: float) -> str:
    return f"{value:+.1f}"


def _largest_change(comp: SampleComparison) -> str:
    """The share that changes most, with its interval(s)."""
    effects = comp.effects
    if effects.empty:
        return ""
    row = effects.loc[effects["difference"].abs().idxmax()]
    text = (
        f"Largest change: {row['share']} {row['share_a']:.1f}% → {row['share_b']:.1f}%, "
        f"{_points(row['difference'])} points (95% CI {_points(row['low'])} to "
        f"{_points(row['high'])}, {comp.replicates} as replicates)"
    )
    if "adjusted_difference" in row:
        verdict = (
            "within what the classifier can tell"
            if row["within_model_error"]
            else "beyond the classifier's error"
        )
        text += (
            f"; corrected for the classifier's error {_points(row['adjusted_difference'])} "
            f"points ({_points(row['adjusted_low'])} to {_points(row['adjusted_high'])}: "
            f"{verdict})"
        )
    return text + "."


def sentence(comp: SampleComparison) -> str:
    """The readout's lines for one comparison: the headline, the largest change, the secondary
    per-chromosome test, the classifier's error and the calls corrected by hand."""
    a = f"{comp.sample_a} ({_spreads(comp.n_spreads_a)}, {comp.n_a} chromosomes)"
    b = f"{comp.sample_b} ({_spreads(comp.n_spreads_b)}, {comp.n_b} chromosomes)"
    if comp.replicates == "chromosomes":
        a, b = f"{comp.sample_a} ({comp.n_a} chromosomes)", f"{comp.sample_b} ({comp.n_b})"
    low_power = comp.replicates == "spreads" and comp.smallest_p >= comp.alpha
    if comp.significant:
        verdict = "differ in type distribution"
    elif low_power:
        verdict = "cannot be shown to differ"
    else:
        verdict = "show no significant difference in type distribution"
    lines = [f"{a} and {b} {verdict} ({comp.test}: {_format_p(comp.p_value)})."]
    if low_power:
        lines.append(
            f"With {comp.n_spreads_a} vs {comp.n_spreads_b} spreads no p below "
            f"{comp.smallest_p:.2g} is possible: this design has no power at α = {comp.alpha:g}, "
            "whatever the chromosome counts. Score more spreads."
        )
    if comp.replicates == "chromosomes":
        lines.append(
            "No spread column: chromosomes counted as replicates, which overstates the "
            "certainty when they come from few cells."
        )
    change = _largest_change(comp)
    if change:
        lines.append(change)
    if comp.replicates == "spreads":
        sec = comp.secondary
        lines.append(
            f"Secondary, chromosomes as replicates (not independent within a spread; not the "
            f"test to report): {sec.test} = {sec.statistic:.2f}, df = {sec.dof}, "
            f"{_format_p(sec.p_value)}, Cramér's V = {sec.cramers_v:.2f}."
        )
    lines.append(comp.classifier_error)
    hand = [
        f"{name}: {k} of {n}"
        for name, k, n in (
            (comp.sample_a, comp.hand_corrected_a, comp.n_a),
            (comp.sample_b, comp.hand_corrected_b, comp.n_b),
        )
        if k is not None
    ]
    if hand:
        lines.append("Calls corrected by hand: " + "; ".join(hand) + ".")
    return "\n  ".join(lines)


def smallest_p_text(m_a: int, m_b: int) -> str:
    """'p ≥ 0.33 with 2 vs 2 spreads' — for plot captions."""
    return f"p ≥ {sp.smallest_p(m_a, m_b):.2g} with {m_a} vs {m_b} spreads"


def sample_lines(summary: pd.DataFrame) -> list[str]:
    """One line per sample of a :func:`summarize` table: its n (spreads, chromosomes), each
    share with the interval to quote (corrected for the classifier's error when the summary has
    it, else spreads as replicates) and the calls corrected by hand."""
    lines = []
    adjusted = "adjusted_percent" in summary.columns
    for sample, rows in summary.groupby("sample", sort=False):
        first = rows.iloc[0]
        size = f"{int(first['n'])} chromosomes"
        if "n_spreads" in rows.columns:
            m = int(first["n_spreads"])
            size = f"{m} spread{'' if m == 1 else 's'}, " + size
        if adjusted:
            shares = [
                f"{r['class']} {r['percent']:.1f}% called, {r['adjusted_percent']:.1f}% "
                f"corrected ({r['adjusted_low']:.1f}–{r['adjusted_high']:.1f})"
                for _, r in rows.iterrows()
            ]
        else:
            shares = [
                f"{r['class']} {r['percent']:.1f}% ({r['share_low']:.1f}–{r['share_high']:.1f})"
                for _, r in rows.iterrows()
            ]
        line = f"{sample} ({size}): " + ", ".join(shares)
        misfit = int(first["spreads_misfit"]) if "spreads_misfit" in rows.columns else 0
        if misfit:
            line += (
                f"; the model's confusion cannot explain the calls of {misfit} of its spreads, "
                "so the corrected shares are not to be trusted"
            )
        if "n_hand_corrected" in rows.columns:
            line += f"; {int(first['n_hand_corrected'])} calls corrected by hand"
        lines.append(line + ".")
    what = "spreads as replicates" if "n_spreads" in summary.columns else "no spreads: Wilson"
    what = "corrected for the classifier's error" if adjusted else what
    return [*lines, f"(95 % intervals, {what}.)"] if lines else []
