"""Warnings about a trained model that its numbers support: cross-validated agreement no better
than always calling the commonest class, and classes with too few crops to learn from."""

from __future__ import annotations

from collections.abc import Mapping

#: fewer crops than this in a class: too few to learn it, whatever the score says (a floor, not
#: a tuned value: below it a 5-fold split leaves at most 3 test crops of the class per fold)
MIN_CROPS_PER_CLASS = 20
#: Cohen's kappa below this is "slight" agreement at best (Landis and Koch, 1977)
MIN_KAPPA = 0.4
#: significance of "better than always calling the commonest class" (one-sided binomial test)
ALPHA = 0.05


def training_warnings(metadata: Mapping) -> list[str]:
    """Plain sentences for the user about a model's metadata (``training.counts`` and the
    cross-validated ``metrics``; the inner-CV accuracy of the design search when no outer
    cross-validation was run); empty when nothing is wrong."""
    from scipy.stats import binomtest

    training = metadata.get("training") or {}
    metrics = metadata.get("metrics") or {}
    counts = {str(c): int(n) for c, n in (training.get("counts") or {}).items()}
    warnings = []
    few = {c: n for c, n in counts.items() if n < MIN_CROPS_PER_CLASS}
    if few:
        listed = ", ".join(f"{c} ({n})" for c, n in few.items())
        more = sum(MIN_CROPS_PER_CLASS - n for n in few.values())
        warnings.append(
            f"Too few crops to learn from in class {listed}: label at least "
            f"{MIN_CROPS_PER_CLASS} per class ({more} more in all) before trusting its calls."
        )
    total = sum(counts.values())
    accuracy = metrics.get("accuracy", metrics.get("inner_cv_accuracy"))
    n = int(metrics.get("n") or total)
    if accuracy is None or not total or not n:
        return warnings
    commonest = max(counts, key=counts.get)
    baseline = counts[commonest] / total
    p = binomtest(round(float(accuracy) * n), n, baseline, alternative="greater").pvalue
    kappa = metrics.get("kappa")
    what = "cross-validated" if "accuracy" in metrics else "inner cross-validation"
    if p > ALPHA or (kappa is not None and float(kappa) < MIN_KAPPA):
        kappa_text = f", κ {float(kappa):.2f}" if kappa is not None else ""
        warnings.append(
            f"Near chance: {what} agreement {100 * float(accuracy):.0f}%{kappa_text} against "
            f"{100 * baseline:.0f}% for always calling {commonest} (p = {p:.2g}): do not use "
            "this model's calls; label more crops of every class."
        )
    return warnings
