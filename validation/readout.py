"""The per-sample comparison on real crops: false-positive rate on random halves of one sample,
power on a planted shift.

The 652 WT crops' folder labels (a/b/c) are used as the calls.

* Null: the WT set is split into two random halves (``splits`` times); the comparison must flag
  about ``alpha`` of them.
* Planted shift: a "WT" sample of ``n`` crops resampled from the real WT crops with the paper's WT
  distribution (A 63.7 / B 30.5 / C 5.8 %) against a "mutant" sample with the paper's CTF18-/-
  distribution (A 26.5 / B 52.2 / C 21.3 %), and at half that shift; power = share of draws
  flagged, at ``n`` and at 50 crops per sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .data import giemsa_dir, squeezenet_weights, wt_crops_dir

CLASSES = ["a", "b", "c"]


def _resample(calls: pd.DataFrame, dist: dict, n: int, rng, name: str) -> pd.DataFrame:
    parts = []
    counts = rng.multinomial(n, [dist[c] for c in "abc"])
    for cls, k in zip("abc", counts, strict=True):
        pool = calls[calls["class"] == cls]
        idx = rng.choice(len(pool), size=k, replace=k > len(pool))
        parts.append(pool.iloc[idx])
    out = pd.concat(parts, ignore_index=True)
    out["sample"] = name
    # pseudo-spreads of ~40 chromosomes for the per-spread variation
    out["spread"] = [f"{name}_{i // 40}" for i in rng.permutation(len(out))]
    return out


def null_pvalues(calls: pd.DataFrame, method: str, splits: int, rng) -> np.ndarray:
    """p-values of the comparison of two random halves of ``calls``, ``splits`` times."""
    from napari_chromosome_sort.analysis import readout

    pvals = []
    n_perm = 2000 if method == "permutation" else 0
    for _ in range(splits):
        perm = rng.permutation(len(calls))
        half = len(calls) // 2
        a = calls["class"].iloc[perm[:half]].value_counts().reindex(CLASSES, fill_value=0)
        b = calls["class"].iloc[perm[half:]].value_counts().reindex(CLASSES, fill_value=0)
        comp = readout.compare_counts(
            a.to_numpy(),
            b.to_numpy(),
            CLASSES,
            method=method,
            n_permutations=n_perm or 10000,
            seed=int(rng.integers(1 << 31)),
        )
        pvals.append(comp.p_value)
    return np.asarray(pvals)


def readout_report(
    crops: Path | None = None,
    splits: int = 1000,
    draws: int = 500,
    n: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    figures: Path | None = None,
) -> dict[str, pd.DataFrame]:
    """Null and planted-shift tables; with ``figures``, the example stacked bar
    (``readout_stacked_bar``) and the null p-value histogram (``readout_null_pvalues``)."""
    from scipy.stats import kstest

    from napari_chromosome_sort.analysis import plots, readout

    rng = np.random.default_rng(seed)
    calls = readout.calls_from_folder(crops or wt_crops_dir(), sample="WT")
    calls["class"] = calls["class"].str.lower()

    null_rows, null_p = [], None
    for method in ("chi2", "permutation"):
        pvals = null_pvalues(calls, method, splits if method == "chi2" else splits // 4, rng)
        null_rows.append(
            {
                "test": method,
                "splits": len(pvals),
                "false_positive_rate": float((pvals < alpha).mean()),
                "ks_uniform_p": float(kstest(pvals, "uniform").pvalue),
            }
        )
        if method == "chi2":
            null_p = pvals

    wt = {c.lower(): v for c, v in readout.PAPER_DISTRIBUTIONS["WT"].items()}
    mut = {c.lower(): v for c, v in readout.PAPER_DISTRIBUTIONS["CTF18-/-"].items()}
    half_shift = {c: (wt[c] + mut[c]) / 2 for c in CLASSES}
    planted = []
    for label, dist in (("paper shift", mut), ("half shift", half_shift)):
        for size in (n, 50):
            flagged, vs = [], []
            for _ in range(draws):
                s1 = _resample(calls, wt, size, rng, "WT")
                s2 = _resample(calls, dist, size, rng, "mutant")
                comp = readout.compare_samples(pd.concat([s1, s2]), "WT", "mutant", classes=CLASSES)
                flagged.append(comp.p_value < alpha)
                vs.append(comp.cramers_v)
            planted.append(
                {
                    "shift": label,
                    "per_sample": size,
                    "draws": draws,
                    "power": float(np.mean(flagged)),
                    "median_cramers_v": float(np.median(vs)),
                }
            )

    # one example, like the paper's Fig. 5
    s1 = _resample(calls, wt, n, rng, "WT")
    s2 = _resample(calls, mut, n, rng, "mutant (planted)")
    table = pd.concat([s1, s2], ignore_index=True)
    table["class"] = table["class"].str.upper()
    summary = readout.summarize(table, classes=["A", "B", "C"])
    comp = readout.compare_samples(table, "WT", "mutant (planted)", classes=["A", "B", "C"])
    if figures is not None:
        plots.save_figure(
            plots.stacked_bar(summary, "WT crops resampled: WT vs planted CTF18-/- shift", [comp]),
            Path(figures) / "readout_stacked_bar",
        )
        plots.save_figure(
            _null_histogram(null_p, alpha), Path(figures) / "readout_null_pvalues", ("png",)
        )
    return {
        "null": pd.DataFrame(null_rows),
        "planted": pd.DataFrame(planted),
        "example": pd.DataFrame([{"sentence": comp.sentence}]),
        "example_summary": summary.round(2),
    }


def _null_histogram(null_p: np.ndarray, alpha: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 3.2), layout="constrained")
    ax = fig.add_subplot()
    ax.hist(null_p, bins=20, range=(0, 1), color="#888888", edgecolor="white")
    ax.axhline(len(null_p) / 20, color="black", lw=0.8, ls="--")
    ax.set_xlabel("p-value (random halves of the WT crops)")
    ax.set_ylabel("splits")
    ax.set_title(
        f"Null: {(null_p < alpha).mean():.3f} of {len(null_p)} splits flagged at α = {alpha}",
        fontsize=9,
    )
    return fig


def learning_curve(figures: Path | None = None, crops: Path | None = None) -> pd.DataFrame:
    """Concordance vs training crops per class (5-fold CV) of a linear head on frozen ImageNet
    SqueezeNet features (1 view); with ``figures``, the curve and the pooled CV confusion."""
    from napari_chromosome_sort.analysis import metrics, plots
    from napari_chromosome_sort.classification.backbones import build_backbone
    from napari_chromosome_sort.classification.features import extract_features
    from napari_chromosome_sort.classification.heads import head_logits, tta_proba
    from napari_chromosome_sort.classification.training import (
        TrainingConfig,
        crossvalidate_features,
        scan_folder,
        train_head,
    )
    from napari_chromosome_sort.progress import run_to_end

    weights = squeezenet_weights()
    config = TrainingConfig(
        weights=str(weights),
        views=1,
        input_size=224,
        feature_set="all",
        pca=256,
        l2_grid=(1e-2, 1e-1),
    )
    paths, y, classes = scan_folder(crops or wt_crops_dir())
    backbone = build_backbone("squeezenet1_1", str(weights))
    X = run_to_end(extract_features(backbone, paths, config.preprocessings()[0], views=1))

    def fit_predict(tr, te):
        head = (yield from train_head(X[tr], y[tr], classes, config))[0]
        return tta_proba(head_logits(head, X[te, :1])).argmax(1)

    curve = run_to_end(metrics.learning_curve(fit_predict, y, classes, (5, 10, 20, 40, 80, 160)))
    cv = run_to_end(crossvalidate_features(X, y, classes, config, folds=5))
    if figures is not None:
        plots.save_figure(
            plots.learning_curve_plot(
                [{k: c[k] for k in ("n_train", "accuracy", "sd")} for c in curve],
                "WT crops: 5-fold CV concordance vs training size",
            ),
            Path(figures) / "readout_learning_curve",
            ("png",),
        )
        plots.save_figure(
            plots.confusion_matrix_plot(
                cv["confusion"]["counts"],
                classes,
                f"WT crops, 5-fold CV: concordance {cv['accuracy']:.3f}, κ {cv['kappa']:.2f}",
            ),
            Path(figures) / "readout_confusion_wt_cv",
            ("png",),
        )
    rows = [{k: c[k] for k in ("n_train", "accuracy", "sd")} for c in curve]
    rows.append({"n_train": "all (5-fold CV)", "accuracy": cv["accuracy"], "sd": np.nan})
    return pd.DataFrame(rows)


def truth_vs_model(batch_objects: Path, figures: Path | None = None) -> pd.DataFrame:
    """Per-spread truth (YOLO classes 0/1/2 = A/B/C) of the Giemsa spreads against a model's
    calls on them from a ``chromosort batch`` run (sample ``giemsa_ddx11``)."""
    from napari_chromosome_sort.analysis import plots, readout

    rows = []
    for path in sorted((giemsa_dir() / "labels").glob("*.txt")):
        for cls in np.loadtxt(path, ndmin=2)[:, 0].astype(int):
            rows.append({"sample": "DDX11-/- truth", "spread": path.stem, "class": "ABC"[cls]})
    objects = pd.read_csv(batch_objects)
    calls = objects[(objects["sample"] == "giemsa_ddx11") & objects["class"].notna()]
    calls = calls.assign(sample="DDX11-/- model")[["sample", "spread", "class"]]
    table = pd.concat([pd.DataFrame(rows), calls], ignore_index=True)
    table["spread"] = table["spread"].astype(str)
    summary = readout.summarize(table, classes=["A", "B", "C"])
    comp = readout.compare_samples(
        table, "DDX11-/- truth", "DDX11-/- model", classes=["A", "B", "C"]
    )
    if figures is not None:
        plots.save_figure(
            plots.stacked_bar(summary, "Giemsa DDX11-/- spreads: truth vs model calls", [comp]),
            Path(figures) / "readout_giemsa_truth_vs_model",
            ("png",),
        )
    return summary.round(1).assign(comparison=comp.sentence)
