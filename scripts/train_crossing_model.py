"""Train the learned crossing score (``crossing_model.py``) on the DAPI spreads with K.tif truth.

Data as in ``scripts/study_crossing_detector.py`` (same cache): every object that the
segmentation's hand-made rules keep or flag ``cluster`` on the 72 ADIR DAPI spreads, described by
the 16 shape measures of :func:`~.crossing_model.shape_measures`; positives
are objects covering a real overlap region, negatives kept objects matching one truth chromosome.
Scores are spread-relative (the median logit of the spread's kept objects is subtracted).

1. Honest estimate: each probe set (A / P / V slides) held out in turn; C and the threshold (the
   score at which the inner out-of-fold predictions lose ``--budget`` of the singles; inner
   GroupKFold by slide) chosen inside the training split.
2. Shipped model: C and threshold chosen the same way on all 72 spreads (8 slide groups), the
   head refitted on all of them, written atomically to ``--out``.

    .venv/bin/python scripts/train_crossing_model.py [--cache /tmp/xc/study] [--budget 0.03]
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "scripts"))

from study_crossing_detector import Study, build  # noqa: E402

from napari_chromosome_sort.segmentation.crossing_model import (  # noqa: E402
    CrossingModel,
    crossing_candidates,
)

CS = (0.01, 0.1, 1.0)


def _head(c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    )


def relative(logits: np.ndarray, images: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Logits minus the median logit of the same spread's kept objects."""
    out = logits.copy()
    for image in np.unique(images[~np.isnan(logits)]):
        here = images == image
        out[here] -= np.median(logits[here & kept])
    return out


def choose(study: Study, x, images, rows, slides, budget, cand) -> tuple[float, float, int]:
    """(C, threshold, overlap objects caught) by GroupKFold(5, slides) within ``rows``."""
    from sklearn.model_selection import GroupKFold

    fold = np.full(len(x), -1)
    for k, (_, te) in enumerate(GroupKFold(5).split(rows, groups=slides[rows])):
        fold[rows[te]] = k
    best = None
    for c in CS:
        logits = np.full(len(x), np.nan)
        for k in range(5):
            fit = np.flatnonzero((fold >= 0) & (fold != k) & study.trainable)
            test = fold == k
            logits[test] = _head(c).fit(x[fit], study.y[fit]).decision_function(x[test])
        z = relative(logits, images, study.kept)
        ev = (fold >= 0) & study.kept
        n_singles = int((ev & (study.n_match > 0)).sum())
        singles = np.sort(z[ev & cand & (study.n_match > 0)])[::-1]
        threshold = float(singles[min(int(budget * n_singles), singles.size - 1)])
        caught = int((ev & cand & study.pos & (z > threshold)).sum())
        if best is None or caught > best[2]:
            best = (c, threshold, caught)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/chromosort_crossing_study"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--budget", type=float, default=0.03, help="share of singles to lose")
    parser.add_argument(
        "--min-rel-area",
        type=float,
        default=1.8,
        help="only objects this x the median object may be flagged (a crossing is two "
        "chromosomes; a single chromosome with open sister chromatids is one)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "src" / "napari_chromosome_sort" / "data" / "crossing_model.json",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.filterwarnings("ignore", category=UserWarning)
    df, x, _ = build(args.data, args.cache, args.jobs)
    x = x.astype(np.float64)
    study = Study(df)
    images, slides, groups = (df[k].to_numpy() for k in ("image", "slide", "group"))
    cand = crossing_candidates(x, args.min_rel_area)
    kept_pos = int((study.kept & study.pos).sum())
    n_single = int(study.n_match.sum())
    print(f"{len(df)} objects, {kept_pos} kept overlap objects, {n_single} matched singles")

    print(f"1. probe set held out, C and threshold chosen inside (budget {args.budget:.0%})")
    total = np.zeros(3, int)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups != g)
        c, threshold, _ = choose(study, x, images, rows, slides, args.budget, cand)
        fit = np.flatnonzero((groups != g) & study.trainable)
        test = groups == g
        logits = np.full(len(x), np.nan)
        logits[test] = _head(c).fit(x[fit], study.y[fit]).decision_function(x[test])
        flagged = np.zeros(len(x), bool)
        flagged[test] = (relative(logits, images, study.kept) > threshold)[test] & cand[test]
        counts = study.count(flagged)
        total += counts
        print(
            f"   held-out {g}: C={c:g} threshold {threshold:.2f}: overlap +{counts[0]}/"
            f"{int((test & study.kept & study.pos).sum())}, singles lost {counts[1]}/"
            f"{int(study.n_match[test].sum())}, other kept flagged {counts[2]}"
        )
    print(
        f"   => overlap objects +{total[0]}/{kept_pos}, singles lost {total[1]}/{n_single} "
        f"({total[1] / max(n_single, 1):.1%}), other kept flagged {total[2]}"
    )

    c, threshold, caught = choose(study, x, images, np.arange(len(x)), slides, args.budget, cand)
    head = _head(c).fit(x[study.trainable], study.y[study.trainable])
    scaler, logistic = head[0], head[1]
    logits = head.decision_function(x)
    medians = [np.median(logits[(images == im) & study.kept]) for im in np.unique(images)]
    model = CrossingModel(
        mean=tuple(float(v) for v in scaler.mean_),
        scale=tuple(float(v) for v in scaler.scale_),
        coef=tuple(float(v) for v in logistic.coef_[0]),
        intercept=float(logistic.intercept_[0]),
        threshold=round(threshold, 4),
        typical_median=float(np.median(medians)),
        min_rel_area=args.min_rel_area,
        provenance=(
            f"scripts/train_crossing_model.py, {datetime.date.today()}: {len(np.unique(images))} "
            "ADIR M-FISH DAPI spreads (github.com/jeanpat/MFISH, README_ADIR.md) with K.tif "
            f"overlap truth; L2 logistic regression C={c:g}, class-balanced; threshold = loss of "
            f"{args.budget:.0%} of matched singles on slide-grouped out-of-fold scores, objects >= "
            f"{args.min_rel_area:g} x the median object"
        ),
    )
    assert np.allclose(model.logit(x), logits)
    model.save(args.out)
    flagged = np.zeros(len(x), bool)
    for im in np.unique(images):
        here = images == im
        flagged[here] = model.flags(x[here], x[here & study.kept])
    counts = study.count(flagged)
    print(
        f"2. shipped: C={c:g}, threshold {threshold:.2f} (inner CV: +{caught}); in-sample "
        f"+{counts[0]}/{kept_pos}, singles lost {counts[1]}, other {counts[2]} -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
