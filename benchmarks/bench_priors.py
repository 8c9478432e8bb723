"""Label-shift benchmark of the label-free class-prior estimates on the labelled WT crops.

1. Out-of-fold probabilities: outer stratified 5-fold CV (``--partitions`` seeds) of the default
   head (``training.train_head``, whole design chosen by inner CV inside every training fold) on
   cached 224 px features; each fold also keeps its *inner* out-of-fold probabilities, on which
   the calibration (BCTS) and the BBSE confusion matrix are fitted, as training does.
2. Shifted subsamples: ``--draws`` samples of 40-100 crops whose class priors are Dirichlet(1),
   Dirichlet(0.5) or fixed (C-dominant like the DDX11 spreads, A-dominant, the paper's CTF18-/-,
   ...); a class drawn more often than it has crops is drawn with replacement.
3. For every estimator: mean absolute error of the estimated class fractions (``est``) and of the
   argmax-call fractions (``calls``), per-crop accuracy, balanced accuracy and the collapse rate
   (a class with >= 10 % true share estimated below 2 %).

Nothing here touches the spreads. Usage (features: an (n, views, D) .npy of the WT crops in
``scan_folder`` order, e.g. from ``features.extract_features`` at 224 px, pad)::

    OMP_NUM_THREADS=1 python benchmarks/bench_priors.py --features X_224_pad.npy \\
        --data ../shared/data/ikemoto_crops_wt --out priors_bench.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from napari_chromosome_sort.classification import priors as P

FIXED = {
    "C80 (A 2 / B 18 / C 80, like 2.png)": [0.02, 0.18, 0.80],
    "A98 (like 3.png)": [0.98, 0.02, 0.0],
    "B60": [0.2, 0.6, 0.2],
    "CTF18-/- (paper)": [0.265, 0.522, 0.213],
    "WT (paper)": [0.637, 0.305, 0.058],
}


def out_of_fold(X, y, classes, seed):
    """Outer-CV test probabilities + per-fold inner OOF probabilities and labels."""
    from sklearn.model_selection import StratifiedKFold

    from napari_chromosome_sort.classification.models.heads import head_logits, tta_proba
    from napari_chromosome_sort.classification.training import TrainingConfig, search, train_head
    from napari_chromosome_sort.progress import run_to_end

    captured = {}
    original = search.choose_members

    def capture(*args):
        out = original(*args)
        captured["oof"], captured["y"] = out[2], args[4]
        return out

    search.choose_members = capture
    try:
        p_te = np.zeros((len(y), len(classes)))
        fold = np.zeros(len(y), int)
        inner = []
        cv = StratifiedKFold(5, shuffle=True, random_state=seed)
        for f, (tr, te) in enumerate(cv.split(X[:, 0, 0], y)):
            head, info = run_to_end(train_head(X[tr], y[tr], classes, TrainingConfig()))
            p_te[te] = tta_proba(head_logits(head, X[te]))
            fold[te] = f
            shift = np.asarray(info["logit_shift"])
            inner.append((tta_proba(captured["oof"] + shift), captured["y"]))
            print(f"partition {seed} fold {f}: {info['members']}", flush=True)
    finally:
        search.choose_members = original
    return p_te, fold, inner


def prepare(p, fold, inner, y, k):
    base = np.bincount(y, minlength=k) / len(y)
    pc = np.zeros_like(p)
    conf = np.zeros((k, k))
    for f, (op, oy) in enumerate(inner):
        t, b = P.fit_calibration(op, oy)
        pc[fold == f] = P.calibrate(p[fold == f], t, b)
        conf += P.soft_confusion(P.calibrate(op, t, b), oy) / len(inner)
    return {"y": y, "p": p, "pc": pc, "conf": conf, "base": base}


def estimators(S, idx):
    """{name: (posteriors used for the calls, estimated class fractions)}."""
    p, pc, base = S["p"][idx], S["pc"][idx], S["base"]
    out = {
        "none (training prior)": (p, p.mean(0)),
        "EM (ML; former default)": P.adapt_priors(p, base),
    }
    for a in (0.5, 1, 2, 3):
        out[f"MAP-EM a={a}"] = P.adapt_priors(p, base, pseudo_counts=a)
    out["BCTS + EM"] = P.adapt_priors(pc, base)
    out["BCTS + MAP-EM a=1"] = P.adapt_priors(pc, base, pseudo_counts=1)
    pi = P.bbse_priors(pc, S["conf"], base)
    out["BBSE (soft)"] = (P.reweight(pc, base, pi), pi)
    return out


def run(sets, scenario, draws, seed=123):
    rng = np.random.default_rng(seed)
    k = len(sets[0]["base"])
    res: dict = {}
    for it in range(draws):
        S = sets[it % len(sets)]
        y = S["y"]
        if scenario.startswith("Dirichlet"):
            prior = rng.dirichlet(np.full(k, float(scenario.split("(")[1].rstrip(")"))))
        else:
            prior = np.asarray(FIXED[scenario])
        n = int(rng.integers(40, 101))
        counts = rng.multinomial(n, prior)
        idx = np.concatenate(
            [
                rng.choice(np.flatnonzero(y == c), m, replace=m > (y == c).sum())
                for c, m in enumerate(counts)
            ]
        )
        true, yt = counts / n, y[idx]
        for name, (q, pi) in estimators(S, idx).items():
            calls = q.argmax(1)
            r = res.setdefault(
                name, {m: [] for m in ("acc", "bal_acc", "mae_calls", "mae_est", "collapse")}
            )
            r["acc"].append((calls == yt).mean())
            r["bal_acc"].append(
                np.mean([(calls[yt == c] == c).mean() for c in range(k) if (yt == c).any()])
            )
            r["mae_calls"].append(np.abs(np.bincount(calls, minlength=k) / n - true).mean())
            r["mae_est"].append(np.abs(pi - true).mean())
            r["collapse"].append(bool(((true >= 0.1) & (pi < 0.02)).any()))
    ref = np.asarray(res["EM (ML; former default)"]["mae_est"])
    out = {}
    for name, r in res.items():
        d = np.asarray(r["mae_est"]) - ref
        out[name] = {m: float(np.mean(v)) for m, v in r.items()}
        out[name]["mae_est_minus_em_se"] = float(d.std() / np.sqrt(len(d)))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True)
    parser.add_argument("--data", required=True, help="folder-per-class WT crops")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--draws", type=int, default=900)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    from napari_chromosome_sort.classification.training import scan_folder

    _, y, classes = scan_folder(args.data)
    X = np.load(args.features)
    if len(X) != len(y):
        raise SystemExit(f"{args.features} has {len(X)} rows, {args.data} {len(y)} crops")
    sets = [
        prepare(*out_of_fold(X, y, classes, s), y, len(classes)) for s in range(args.partitions)
    ]
    results = {}
    for scenario in ["Dirichlet(1)", "Dirichlet(0.5)", *FIXED]:
        results[scenario] = run(sets, scenario, args.draws)
        print(f"\n{scenario}: {args.draws} draws of 40-100 crops (MAE in %)")
        print(
            f"{'estimator':24s} {'acc':>6s} {'bal.acc':>7s} {'calls':>6s} {'est':>6s} "
            f"{'(SE)':>6s} {'collapse':>8s}"
        )
        for name, r in results[scenario].items():
            print(
                f"{name:24s} {r['acc']:6.3f} {r['bal_acc']:7.3f} {100 * r['mae_calls']:6.2f} "
                f"{100 * r['mae_est']:6.2f} {100 * r['mae_est_minus_em_se']:6.2f} "
                f"{r['collapse']:8.3f}"
            )
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
