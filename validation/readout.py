"""The per-sample comparison with spreads as the replicates: false alarms on two samples of one
distribution, power on a planted WT -> mutant shift, coverage of the effect-size and corrected
share intervals, and the discordant 2 vs 2 case.

The calls are drawn, not measured: the WT crops carry no spread of origin, so spreads are
simulated. Each sample has ``m`` spreads of ``spread_size`` chromosomes; a spread's own shares
are drawn around its sample's (Dirichlet with concentration ``s``, smaller = spreads differ
more): no spread effect (every spread has the sample's shares), moderate (s = 20) and as much
as the five annotated DDX11-/- spreads show (``ddx11_heterogeneity``: the concentration whose
overdispersion matches theirs). Shares: the seed paper's WT (A 63.7 / B 30.5 / C 5.8 %) and
CTF18-/- (A 26.5 / B 52.2 / C 21.3 %), and half that shift.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .data import giemsa_dir, squeezenet_weights, wt_crops_dir

CLASSES = ["A", "B", "C"]


def ddx11_heterogeneity() -> tuple[float, float, float]:
    """(overdispersion phi, mean spread size, Dirichlet concentration) of the annotated DDX11
    spreads' box classes: phi = 1 + (n - 1) / (s + 1) for a Dirichlet-multinomial."""
    from napari_chromosome_sort.analysis.confusion import overdispersion

    rows = []
    for path in sorted((giemsa_dir() / "labels").glob("*.txt")):
        classes = np.loadtxt(path, ndmin=2)[:, 0].astype(int)
        rows.append(np.bincount(classes, minlength=3))
    counts = np.array(rows)
    phi, _ = overdispersion(counts)
    n = float(counts.sum(1).mean())
    return phi, n, (n - 1) / (phi - 1) - 1 if phi > 1 else float("inf")


def draw_spreads(shares, m: int, size: int, concentration: float, rng) -> np.ndarray:
    """(m, k) call counts of ``m`` spreads around ``shares`` (Dirichlet; inf = no spread
    effect)."""
    shares = np.asarray(shares, dtype=float)
    if np.isinf(concentration):
        return rng.multinomial(size, shares, size=m)
    own = rng.dirichlet(np.maximum(shares * concentration, 1e-3), size=m)
    return np.array([rng.multinomial(size, q) for q in own])


def _tests(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[float, float, dict]:
    """(spread p, chromosome chi-square p, effect row of the open share) of one pair."""
    from scipy import stats

    from napari_chromosome_sort.analysis import spreads

    _, p_spread, _ = spreads.permutation_over_spreads(a, b, n_permutations=999, seed=seed)
    chi2 = spreads.chi2_statistics(a.sum(0), b.sum(0))[0]
    dof = int(((a.sum(0) + b.sum(0)) > 0).sum()) - 1
    p_chrom = float(stats.chi2.sf(chi2, dof)) if dof > 0 else 1.0
    effects = spreads.effect_table(a, b, CLASSES).set_index("share")
    return p_spread, p_chrom, effects.loc["B+C (open)"].to_dict()


def _distributions():
    from napari_chromosome_sort.analysis.readout import PAPER_DISTRIBUTIONS

    wt = np.array([PAPER_DISTRIBUTIONS["WT"][c] for c in CLASSES])
    mut = np.array([PAPER_DISTRIBUTIONS["CTF18-/-"][c] for c in CLASSES])
    return wt, {"none (null)": wt, "half shift": (wt + mut) / 2, "paper shift": mut}


def spread_tables(
    draws: int = 400,
    spread_size: int = 40,
    spreads_per_sample=(2, 3, 5, 10),
    alpha: float = 0.05,
    seed: int = 0,
    null_draws: int | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Share of draws flagged at ``alpha`` by the spread test (headline) and by the
    per-chromosome chi-square (secondary), with the coverage of the open-share difference's
    interval, for every heterogeneity, shift and number of spreads (``null_draws``, default five
    times ``draws``, for the rows without a shift, whose rate is read against 5 %). Also returns
    the null p-values (5 vs 5 spreads, moderate heterogeneity) for the histogram."""
    rng = np.random.default_rng(seed)
    phi, _, s_ddx11 = ddx11_heterogeneity()
    levels = {
        "none": float("inf"),
        "moderate (s = 20)": 20.0,
        f"DDX11-like (s = {s_ddx11:.2f})": s_ddx11,
    }
    wt, shifts = _distributions()
    rows, null_p = [], {}
    for level, conc in levels.items():
        for shift, other in shifts.items():
            true_open = 100 * ((1 - other[0]) - (1 - wt[0]))
            for m in spreads_per_sample:
                flagged_s, flagged_c, covered = [], [], []
                n_draws = draws if shift != "none (null)" else (null_draws or 5 * draws)
                for _ in range(n_draws):
                    a = draw_spreads(wt, m, spread_size, conc, rng)
                    b = draw_spreads(other, m, spread_size, conc, rng)
                    p_s, p_c, effect = _tests(a, b, int(rng.integers(1 << 31)))
                    flagged_s.append(p_s < alpha)
                    flagged_c.append(p_c < alpha)
                    covered.append(effect["low"] <= true_open <= effect["high"])
                    if m == 5 and shift.startswith("none") and level.startswith("moderate"):
                        null_p.setdefault("spreads", []).append(p_s)
                        null_p.setdefault("chromosomes", []).append(p_c)
                rows.append(
                    {
                        "spread effect": level,
                        "shift": shift,
                        "spreads per sample": m,
                        "chromosomes per sample": m * spread_size,
                        "draws": n_draws,
                        "flagged: spreads (headline)": float(np.mean(flagged_s)),
                        "flagged: chromosomes (secondary)": float(np.mean(flagged_c)),
                        "open-share CI covers the truth": float(np.mean(covered)),
                    }
                )
    return pd.DataFrame(rows), {"phi_ddx11": phi, **{k: np.asarray(v) for k, v in null_p.items()}}


def corrected_coverage(
    draws: int = 200, spread_size: int = 40, m: int = 5, alpha: float = 0.05, seed: int = 1
) -> pd.DataFrame:
    """Calls made through a planted confusion (the bundled model's out-of-fold rates, from its
    652 WT training crops): how often the raw call share and the corrected share's interval
    hold the true share, per class, with the confusion re-estimated from 652 crops each draw."""
    from napari_chromosome_sort import _sample_data
    from napari_chromosome_sort.analysis import confusion as cm

    model = cm.load_confusion(_sample_data.bundled_model_path())
    rates, per_class = model.rates, model.counts.sum(1)
    wt, shifts = _distributions()
    rows = []
    for name, truth in (("WT", wt), ("CTF18-/- (paper)", shifts["paper shift"])):
        hits_raw, hits_fixed, width = [], [], []
        for _ in range(draws):
            rng = np.random.default_rng(seed)
            seed += 1
            true_counts = draw_spreads(truth, m, spread_size, 20.0, rng)
            called = np.array(
                [
                    sum(rng.multinomial(k, rates[i]) for i, k in enumerate(row))
                    for row in true_counts
                ]
            )
            training = np.array(
                [rng.multinomial(round(n), r) for n, r in zip(per_class, rates, strict=True)]
            )
            confusion = cm.Confusion(CLASSES, training, "planted")
            shares = true_counts.sum(0) / true_counts.sum()
            lo_raw, hi_raw = _spread_interval(called, alpha)
            est, boot = cm.adjusted_shares(called, confusion, rng, 1000)
            lo, hi = cm.percentile_interval(boot, est, alpha)
            hits_raw.append((lo_raw <= shares) & (shares <= hi_raw))
            hits_fixed.append((lo <= shares) & (shares <= hi))
            width.append(hi - lo)
        for j, cls in enumerate(CLASSES):
            rows.append(
                {
                    "sample": name,
                    "class": cls,
                    "true share %": round(100 * truth[j], 1),
                    "raw calls: interval holds the truth": float(np.mean([h[j] for h in hits_raw])),
                    "corrected: interval holds the truth": float(
                        np.mean([h[j] for h in hits_fixed])
                    ),
                    "corrected: median width (points)": float(
                        100 * np.median([w[j] for w in width])
                    ),
                }
            )
    return pd.DataFrame(rows)


def _spread_interval(counts: np.ndarray, alpha: float):
    from napari_chromosome_sort.analysis.spreads import sample_interval

    return sample_interval(counts, alpha)


def discordant_example() -> tuple[pd.DataFrame, str]:
    """The two-samples-of-two-discordant-spreads case (WT 10 % / 50 % C, mutant 30 % / 70 % C,
    100 chromosomes each, A and B sharing the rest): the readout's sentence."""
    from napari_chromosome_sort.analysis import readout

    frames = []
    for sample, c_shares in (("WT", (0.1, 0.5)), ("mutant", (0.3, 0.7))):
        for i, c in enumerate(c_shares):
            n_c = round(100 * c)
            calls = ["A"] * ((100 - n_c) // 2) + ["B"] * (100 - n_c - (100 - n_c) // 2)
            frames.append(
                pd.DataFrame(
                    {"sample": sample, "spread": f"{sample}{i}", "class": calls + ["C"] * n_c}
                )
            )
    table = pd.concat(frames, ignore_index=True)
    comp = readout.compare_all(table, classes=CLASSES)[0]
    return table, comp.sentence


def readout_report(
    draws: int = 400,
    spread_size: int = 40,
    alpha: float = 0.05,
    seed: int = 0,
    figures: Path | None = None,
) -> dict[str, pd.DataFrame]:
    """The tables; with ``figures`` the example plot (``readout_stacked_bar``: 5 vs 5 spreads,
    paper shift, moderate spread effect) and the null p-value histograms
    (``readout_null_pvalues``)."""
    from napari_chromosome_sort.analysis import plots, readout

    table, extras = spread_tables(draws, spread_size, alpha=alpha, seed=seed)
    _, sentence = discordant_example()
    rng = np.random.default_rng(seed + 7)
    wt, shifts = _distributions()
    frames = []
    for name, shares in (("WT", wt), ("mutant (planted)", shifts["paper shift"])):
        counts = draw_spreads(shares, 5, spread_size, 20.0, rng)
        for i, row in enumerate(counts):
            frames.append(
                pd.DataFrame(
                    {"sample": name, "spread": f"{name}{i}", "class": np.repeat(CLASSES, row)}
                )
            )
    example = pd.concat(frames, ignore_index=True)
    summary = readout.summarize(example, classes=CLASSES)
    comps = readout.compare_all(example, classes=CLASSES)
    if figures is not None:
        per = readout.spread_summary(example, classes=CLASSES)
        fig = plots.stacked_bar(
            summary, "Planted WT → CTF18-/- shift, 5 vs 5 spreads", comps, spreads=per
        )
        plots.save_figure(fig, Path(figures) / "readout_stacked_bar", ("png",))
        plots.save_figure(
            _null_histogram(extras, alpha), Path(figures) / "readout_null_pvalues", ("png",)
        )
    return {
        "spreads": table,
        "phi_ddx11": pd.DataFrame([{"overdispersion of the 5 DDX11 spreads": extras["phi_ddx11"]}]),
        "discordant": pd.DataFrame([{"readout": sentence}]),
        "example": pd.DataFrame([{"readout": comps[0].sentence}]),
        "example_summary": summary.round(2),
    }


def _null_histogram(extras: dict, alpha: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3), layout="constrained")
    for k, (key, label) in enumerate(
        (
            ("spreads", "spreads as replicates (headline)"),
            ("chromosomes", "chromosomes (secondary)"),
        )
    ):
        ax = fig.add_subplot(1, 2, k + 1)
        p = extras[key]
        ax.hist(p, bins=20, range=(0, 1), color="#888888", edgecolor="white")
        ax.axhline(len(p) / 20, color="black", lw=0.8, ls="--")
        ax.set_xlabel(f"p, {label}", fontsize=8)
        ax.set_ylabel("draws")
        ax.set_title(f"{(p < alpha).mean():.3f} of {len(p)} flagged at α = {alpha}", fontsize=8)
    fig.suptitle(
        "Null: two samples of 5 spreads from one distribution (moderate spread effect)", fontsize=9
    )
    return fig


def learning_curve(figures: Path | None = None, crops: Path | None = None) -> pd.DataFrame:
    """Concordance vs training crops per class (5-fold CV) of a linear head on frozen ImageNet
    SqueezeNet features (1 view); with ``figures``, the curve and the pooled CV confusion."""
    from napari_chromosome_sort.analysis import metrics, plots
    from napari_chromosome_sort.classification.features import extract_features
    from napari_chromosome_sort.classification.models.backbones import build_backbone
    from napari_chromosome_sort.classification.models.heads import head_logits, tta_proba
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


def corrected_on_ddx11(batch_objects: Path, model: Path | None = None) -> pd.DataFrame:
    """Per annotated DDX11 spread (box classes = truth) against a ``chromosort batch`` run's
    calls (sample ``giemsa_ddx11``): the largest share error of the calls, of the mean
    probabilities and of the shares corrected with the model's stored confusion (the bundled
    model's by default), how many of the 3 corrected intervals hold the true share, and the
    confusion's fit p (small = the model errs here otherwise than on its training crops)."""
    from napari_chromosome_sort import _sample_data
    from napari_chromosome_sort.analysis import readout
    from napari_chromosome_sort.analysis.confusion import load_confusion

    confusion = load_confusion(model or _sample_data.bundled_model_path())
    objects = pd.read_csv(batch_objects)
    calls = objects[(objects["sample"] == "giemsa_ddx11") & objects["class"].notna()].copy()
    calls["spread"] = calls["spread"].astype(str)
    per = readout.spread_summary(calls, classes=CLASSES, confusion=confusion)
    rows = []
    for path in sorted((giemsa_dir() / "labels").glob("*.txt")):
        truth = np.bincount(np.loadtxt(path, ndmin=2)[:, 0].astype(int), minlength=3)
        truth = 100 * truth / truth.sum()
        sub = per[per["spread"] == path.stem].set_index("class").reindex(CLASSES)
        mean_p = 100 * calls.loc[calls["spread"] == path.stem, [f"p_{c}" for c in CLASSES]].mean()
        held = (sub["adjusted_low"] <= truth) & (truth <= sub["adjusted_high"])
        rows.append(
            {
                "spread": path.stem,
                "calls: worst share error": np.abs(sub["percent"] - truth).max(),
                "mean probability: worst error": np.abs(mean_p.to_numpy() - truth).max(),
                "corrected: worst error": np.abs(sub["adjusted_percent"] - truth).max(),
                "corrected intervals holding the truth (of 3)": int(held.sum()),
                "confusion fit p": float(sub["confusion_fit_p"].iloc[0]),
            }
        )
    return pd.DataFrame(rows).round(3)


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
    comp = readout.compare_all(table, classes=["A", "B", "C"])[0]
    if figures is not None:
        plots.save_figure(
            plots.stacked_bar(summary, "Giemsa DDX11-/- spreads: truth vs model calls", [comp]),
            Path(figures) / "readout_giemsa_truth_vs_model",
            ("png",),
        )
    return summary.round(1).assign(comparison=comp.sentence)
