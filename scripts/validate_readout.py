"""Validate the per-sample comparison on real crops: power on a planted shift, false-positive rate
on random halves of one sample.

    python scripts/validate_readout.py --crops ../shared/data/ikemoto_crops_wt

The 652 WT crops' folder labels (a/b/c) are used as the calls.

* Null: the WT set is split into two random halves (``--splits`` times); the comparison must flag
  about ``alpha`` of them.
* Planted shift: a "WT" sample of ``--n`` crops resampled (without replacement) from the real WT
  crops with the paper's WT distribution (A 63.7 / B 30.5 / C 5.8 %), and a "mutant" sample of
  ``--n`` crops resampled (with replacement where needed) with the paper's CTF18-/- distribution
  (A 26.5 / B 52.2 / C 21.3 %); power = fraction of draws flagged. Also at a smaller shift
  (halfway) and smaller n.

Writes docs/images/readout_stacked_bar.{png,svg}, readout_null_pvalues.png and a JSON of numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


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


def _learning_curve(args, images: Path) -> dict:
    """Concordance vs training crops per class (5-fold CV) and the pooled CV confusion."""
    from napari_chromosome_sort.analysis import metrics, plots
    from napari_chromosome_sort.classification.backbones import build_backbone
    from napari_chromosome_sort.classification.heads import head_logits, tta_proba
    from napari_chromosome_sort.classification.training import (
        TrainingConfig,
        crossvalidate_features,
        scan_folder,
        train_head,
    )
    from napari_chromosome_sort.progress import Progress, run_to_end

    weights = Path(args.crops).parents[1] / "weights" / "squeezenet1_1_imagenet_features.pth"
    config = TrainingConfig(
        weights=str(weights),
        views=1,
        input_size=224,
        feature_set="all",
        pca=256,
        l2_grid=(1e-2, 1e-1),
    )
    paths, y, classes = scan_folder(args.crops)
    from napari_chromosome_sort.classification.features import extract_features

    X = run_to_end(
        extract_features(
            build_backbone("squeezenet1_1", str(weights)),
            paths,
            config.preprocessings()[0],
            views=1,
        )
    )

    def fit_predict(tr, te):
        head = run_to_end(train_head(X[tr], y[tr], classes, config))[0]
        yield Progress(1, 1, "", result=tta_proba(head_logits(head, X[te, :1])).argmax(1))

    curve = run_to_end(metrics.learning_curve(fit_predict, y, classes, (5, 10, 20, 40, 80, 160)))
    cv = run_to_end(crossvalidate_features(X, y, classes, config, folds=5))
    plots.save_figure(
        plots.learning_curve_plot(
            [{k: c[k] for k in ("n_train", "accuracy", "sd")} for c in curve],
            "WT crops: 5-fold CV concordance vs training size",
        ),
        images / "readout_learning_curve",
        ("png",),
    )
    plots.save_figure(
        plots.confusion_matrix_plot(
            cv["confusion"]["counts"],
            classes,
            f"WT crops, 5-fold CV: concordance {cv['accuracy']:.3f}, κ {cv['kappa']:.2f}",
        ),
        images / "readout_confusion_wt_cv",
        ("png",),
    )
    return {
        "curve": curve,
        "cv_accuracy": cv["accuracy"],
        "cv_kappa": cv["kappa"],
        "confusion": cv["confusion"]["counts"],
    }


def _truth_vs_model(args, images: Path) -> dict:
    """Per-spread truth (YOLO classes 0/1/2 = A/B/C) of the 3 Giemsa spreads vs the model's calls
    on the same spreads from a batch run."""
    from napari_chromosome_sort.analysis import plots, readout

    labels = Path(args.crops).parent / "giemsa_spreads_ddx11" / "labels"
    rows = []
    for path in sorted(labels.glob("*.txt")):
        for cls in np.loadtxt(path, ndmin=2)[:, 0].astype(int):
            rows.append({"sample": "DDX11-/- truth", "spread": path.stem, "class": "ABC"[cls]})
    objects = pd.read_csv(args.batch_objects)
    calls = objects[(objects["sample"] == "giemsa_ddx11") & objects["class"].notna()]
    calls = calls.assign(sample="DDX11-/- model")[["sample", "spread", "class"]]
    table = pd.concat([pd.DataFrame(rows), calls], ignore_index=True)
    table["spread"] = table["spread"].astype(str)
    summary = readout.summarize(table, classes=["A", "B", "C"])
    comp = readout.compare_samples(
        table, "DDX11-/- truth", "DDX11-/- model", classes=["A", "B", "C"]
    )
    plots.save_figure(
        plots.stacked_bar(summary, "Giemsa DDX11-/- spreads: truth vs model calls", [comp]),
        images / "readout_giemsa_truth_vs_model",
        ("png",),
    )
    return {"sentence": comp.sentence, "summary": summary.round(1).to_dict("records")}


def main(argv=None) -> int:
    from napari_chromosome_sort.analysis import plots, readout

    repo = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--crops", default=str(repo.parent / "shared" / "data" / "ikemoto_crops_wt")
    )
    parser.add_argument("--splits", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", default=str(repo / "docs" / "images"))
    parser.add_argument("--json", default=str(repo / "out" / "readout_validation.json"))
    parser.add_argument(
        "--learning-curve",
        action="store_true",
        help="also a learning curve + cross-validated confusion of a squeezenet1_1 head on the "
        "WT crops (frozen ImageNet features, 1 view)",
    )
    parser.add_argument(
        "--batch-objects",
        default=None,
        help="objects.csv of a `chromosort batch` run that includes the Giemsa DDX11 spreads "
        "(sample giemsa_ddx11, spreads 1,2,3): its calls are compared with the YOLO truth",
    )
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    calls = readout.calls_from_folder(args.crops, sample="WT")
    calls["class"] = calls["class"].str.lower()
    classes = ["a", "b", "c"]
    observed = calls["class"].value_counts(normalize=True).reindex(classes).to_dict()
    results: dict = {"n_crops": len(calls), "observed_distribution": observed}

    # ---- null: random halves of the same sample (both tests)
    for method in ("chi2", "permutation"):
        pvals = []
        n_perm = 2000 if method == "permutation" else 0
        for _ in range(args.splits if method == "chi2" else args.splits // 4):
            perm = rng.permutation(len(calls))
            half = len(calls) // 2
            a = calls["class"].iloc[perm[:half]].value_counts().reindex(classes, fill_value=0)
            b = calls["class"].iloc[perm[half:]].value_counts().reindex(classes, fill_value=0)
            comp = readout.compare_counts(
                a.to_numpy(),
                b.to_numpy(),
                classes,
                method=method,
                n_permutations=n_perm or 10000,
                seed=int(rng.integers(1 << 31)),
            )
            pvals.append(comp.p_value)
        pvals = np.asarray(pvals)
        results[f"null_{method}"] = {
            "splits": len(pvals),
            "false_positive_rate": float((pvals < args.alpha).mean()),
            "ks_uniform_p": float(__import__("scipy.stats").stats.kstest(pvals, "uniform").pvalue),
        }
        if method == "chi2":
            null_p = pvals

    # ---- planted shift
    wt = {c.lower(): v for c, v in readout.PAPER_DISTRIBUTIONS["WT"].items()}
    mut = {c.lower(): v for c, v in readout.PAPER_DISTRIBUTIONS["CTF18-/-"].items()}
    half_shift = {c: (wt[c] + mut[c]) / 2 for c in classes}
    power = {}
    for label, dist in (("paper_shift", mut), ("half_shift", half_shift)):
        for n in (args.n, 50):
            flagged, vs = [], []
            for _ in range(args.draws):
                s1 = _resample(calls, wt, n, rng, "WT")
                s2 = _resample(calls, dist, n, rng, "mutant")
                comp = readout.compare_samples(pd.concat([s1, s2]), "WT", "mutant", classes=classes)
                flagged.append(comp.p_value < args.alpha)
                vs.append(comp.cramers_v)
            power[f"{label}_n{n}"] = {
                "power": float(np.mean(flagged)),
                "median_cramers_v": float(np.median(vs)),
            }
    results["planted"] = power

    # ---- one example figure, like the paper's Fig. 5
    s1 = _resample(calls, wt, args.n, rng, "WT")
    s2 = _resample(calls, mut, args.n, rng, "mutant (planted)")
    table = pd.concat([s1, s2], ignore_index=True)
    table["class"] = table["class"].str.upper()
    summary = readout.summarize(table, classes=["A", "B", "C"])
    comp = readout.compare_samples(table, "WT", "mutant (planted)", classes=["A", "B", "C"])
    results["example"] = {"sentence": comp.sentence, "summary": summary.round(2).to_dict("records")}
    images = Path(args.images)
    plots.save_figure(
        plots.stacked_bar(summary, "WT crops resampled: WT vs planted CTF18-/- shift", [comp]),
        images / "readout_stacked_bar",
    )
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 3.2), layout="constrained")
    ax = fig.add_subplot()
    ax.hist(null_p, bins=20, range=(0, 1), color="#888888", edgecolor="white")
    ax.axhline(len(null_p) / 20, color="black", lw=0.8, ls="--")
    ax.set_xlabel("p-value (random halves of the WT crops)")
    ax.set_ylabel("splits")
    ax.set_title(
        f"Null: {results['null_chi2']['false_positive_rate']:.3f} of "
        f"{len(null_p)} splits flagged at α = {args.alpha}",
        fontsize=9,
    )
    plots.save_figure(fig, images / "readout_null_pvalues", ("png",))
    if args.learning_curve:
        results["learning_curve"] = _learning_curve(args, images)
    if args.batch_objects:
        results["giemsa_truth_vs_model"] = _truth_vs_model(args, images)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    print(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
