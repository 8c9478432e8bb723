"""The correction loop simulated on the five annotated Giemsa DDX11 spreads.

Each spread is called end to end by the bundled WT model (segment -> crop -> classify, the
defaults of ``chromosort predict``). A simulated user then corrects ``k`` of its calls that
matched an annotated box (IoU >= 0.5, one-to-one) to the box's class, the ``k`` least sure
first (the order of the napari "Review least sure" walk, ranked once on the model's calls) or,
as the baseline, ``k`` matched calls chosen at random; presses Retrain once
(:meth:`CorrectionSession.retrain`: the head refitted on the WT crops + the corrections) and
reads the spread again. Figures per spread: annotated chromosomes called right over the whole
spread (a corrected call counts with its hand class) and over the annotated chromosomes NOT
corrected, and the largest A/B/C share error in points (the calls of every kept object, the hand
classes included, against the box classes). ``k = 0`` is the model as shipped.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

CORRECTIONS = (5, 10, 20)
SHARE_TARGET = 5.0  # points: "20 corrections bring every spread's shares within 5 points"


@dataclass
class LoopSpread:
    """One spread predicted once and prepared once: the session (features cached), each
    matched object's box class (by object label) and every box's class."""

    name: str
    session: object  # a prepared CorrectionSession, never corrected itself
    truth_of: dict[int, int]  # object label -> class index of the box it matched
    box_classes: np.ndarray  # (n_boxes,)


WALKS = ("least-sure", "by-class", "margin")
WALK_NAMES = {"least-sure": "least sure", "by-class": "least sure by class", "margin": "margin"}


def smallest_margin_first(table: pd.DataFrame, classes: Sequence[str]) -> list[int]:
    """Labels of the calls not yet corrected, the smallest difference between the two most
    probable classes first (ties in label order): a walk order compared with the others."""
    from napari_chromosome_sort.classification.training.corrections import corrected_mask

    proba = np.sort(table[[f"p_{c}" for c in classes]].to_numpy(float), axis=1)
    margin = proba[:, -1] - proba[:, -2]
    labels = table["label"].astype(int).to_numpy()
    done = corrected_mask(table)
    return [int(labels[i]) for i in np.lexsort((labels, margin)) if not done[i]]


def least_sure_matched(
    session, truth_of: dict[int, int], k: int, unmatched: str = "reject", walk: str = "least-sure"
) -> list[int]:
    """The first ``k`` calls of the walk (``walk``: least sure first, the called classes in
    turn, or the smallest margin first); an object that matched no box is marked not a
    chromosome (``unmatched="reject"``, one of the ``k``) or passed over (``"pass"``)."""
    if walk not in WALKS:
        raise ValueError(f"unknown walk {walk!r}; use one of {WALKS}")
    if walk == "margin":
        labels = smallest_margin_first(session.table, session.classes)
    else:
        labels = session.least_sure(by_class=walk == "by-class")
    return (labels if unmatched == "reject" else [x for x in labels if x in truth_of])[:k]


def random_matched(
    truth_of: dict[int, int],
    k: int,
    rng: np.random.Generator,
    kept: Sequence[int] = (),
    unmatched: str = "reject",
) -> list[int]:
    """``k`` calls drawn at random (the baseline): of all ``kept`` objects with
    ``unmatched="reject"``, else of the matched ones."""
    labels = sorted(kept) if unmatched == "reject" and len(kept) else sorted(truth_of)
    chosen = rng.choice(len(labels), size=min(k, len(labels)), replace=False)
    return [labels[i] for i in sorted(chosen)]


def without_prior_shift(model):
    """A copy of ``model`` (its backbone shared) whose head has no training-prior correction
    (the logit shift towards the WT class frequencies set to zero): a diagnostic."""
    from napari_chromosome_sort.classification.models.classifier import ChromosomeClassifier

    head = copy.deepcopy(model.head)
    head.logit_shift.zero_()
    new = ChromosomeClassifier(
        model.backbone, head, list(model.classes), model.preprocessing, model.head_kind
    )
    new.metadata = copy.deepcopy(model.metadata)
    return new.eval()


def fresh_session(prepared, dataset_root, model=None):
    """A copy of a prepared session with no corrections yet, saving to ``dataset_root`` (and
    retraining from ``model`` when given): the cached features and the refit's principal axes
    are shared, nothing is computed again."""
    from napari_chromosome_sort.classification.training.corrections import CORRECTED
    from napari_chromosome_sort.files.dataset import CropDataset

    session = copy.copy(prepared)
    session.table = prepared.prediction.table.copy()
    session.table[CORRECTED] = False
    session.files = {}
    session.dataset = CropDataset(dataset_root, classes=prepared.classes)
    session.model = prepared.model if model is None else model
    refit = getattr(prepared, "_refit", None)
    if refit is not None:  # its warm start is per session
        session._refit = copy.copy(refit)
        session._refit.params = None
    return session


def correct_and_retrain(
    spread: LoopSpread, labels: Sequence[int], dataset_root, model=None, spread_mix=False
) -> pd.DataFrame:
    """The spread's calls table after correcting ``labels`` to their box classes (an object
    that matched no box marked not a chromosome) and retraining once from ``model`` (default:
    the session's; the shipped calls when ``labels`` is empty), with the spread's class mix
    re-estimated when ``spread_mix``."""
    from napari_chromosome_sort.progress import run_to_end

    if not len(labels):
        return spread.session.prediction.table.copy()
    session = fresh_session(spread.session, dataset_root, model)
    for label in labels:
        if int(label) in spread.truth_of:
            session.correct(int(label), session.classes[spread.truth_of[int(label)]])
        else:
            session.reject(int(label))
    return run_to_end(session.retrain(spread_mix=spread_mix))


def score_loop(
    table: pd.DataFrame,
    classes: Sequence[str],
    truth_of: dict[int, int],
    box_classes: np.ndarray,
    corrected: Sequence[int],
) -> dict:
    """Called right over the whole spread and over the annotated chromosomes not corrected,
    and the largest share error in points."""
    index = {str(c): j for j, c in enumerate(classes)}
    labels = table["label"].astype(int).to_numpy()
    pred = np.array([index[str(c)] for c in table["class"]], int)
    pred_of = dict(zip(labels, pred, strict=True))
    done = {int(label) for label in corrected if int(label) in truth_of}
    rejected = {int(label) for label in corrected} - done  # marked not a chromosome
    right = [label for label, cls in truth_of.items() if pred_of.get(label) == cls]
    right_rest = [label for label in right if label not in done]
    boxes = len(box_classes)
    matched_rest = len(set(truth_of) - done)
    shares = [
        abs(float(np.mean(box_classes == j)) - (float(np.mean(pred == j)) if len(pred) else 0.0))
        for j in range(len(classes))
    ]
    return {
        "boxes": boxes,
        "matched": len(truth_of),
        "corrected": len(done),
        "rejected": len(rejected),
        "right": len(right),
        "right_not_corrected": len(right_rest),
        "right_of_boxes": len(right) / max(boxes, 1),
        "right_of_not_corrected": len(right_rest) / max(boxes - len(done), 1),
        "concordance_not_corrected": len(right_rest) / max(matched_rest, 1),
        "share_error_points": 100 * max(shares),
    }


def prepare_spread(model, spread, training_folder, cache_root) -> LoopSpread:
    """Predict ``spread`` end to end once, match its boxes, and prepare a correction session
    (features of its crops and of the training crops, the latter cached on disk)."""
    from napari_chromosome_sort.classification.predict import predict_spread
    from napari_chromosome_sort.classification.training.corrections import CorrectionSession
    from napari_chromosome_sort.files.dataset import CropDataset
    from napari_chromosome_sort.progress import run_to_end

    from .boxes import match_boxes

    prediction = predict_spread(model, spread.image)
    table = prediction.table
    labels = table["label"].astype(int).to_numpy()
    truth = spread.classes
    truth_of = {int(labels[obj]): int(truth[box]) for box, obj in match_boxes(spread.boxes, table)}
    dataset = CropDataset(cache_root / f"unused-{spread.name}", classes=model.classes)
    session = CorrectionSession(
        model, prediction, dataset, spread.name, "giemsa_ddx11", training_folder
    )
    run_to_end(session.prepare())
    return LoopSpread(spread.name, session, truth_of, truth)


def loop_rows(
    spread: LoopSpread,
    ks=CORRECTIONS,
    seeds: int = 5,
    drop_prior_shift: bool = False,
    unmatched: str = "reject",
    spread_mix: bool = False,
    walk: str = "least-sure",
) -> list[dict]:
    """One row per (strategy, k, seed) on one spread; ``k = 0`` once, as shipped.
    ``drop_prior_shift``: retrain without the WT prior correction (a diagnostic);
    ``unmatched``: what the simulated user does with an object that matched no box;
    ``spread_mix``: retrain with the spread's class mix re-estimated; ``walk``: the order of
    the walk (:data:`WALKS`)."""
    classes = spread.session.classes
    model = without_prior_shift(spread.session.model) if drop_prior_shift else None
    runs = [("none", 0, 0, [])]
    for k in ks:
        ranked = least_sure_matched(spread.session, spread.truth_of, k, unmatched, walk)
        runs.append((WALK_NAMES[walk], k, 0, ranked))
        kept = spread.session.table["label"].astype(int).tolist()
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            drawn = random_matched(spread.truth_of, k, rng, kept, unmatched)
            runs.append(("random", k, seed, drawn))
    rows = []
    for strategy, k, seed, labels in runs:
        with tempfile.TemporaryDirectory(prefix="loop-") as root:
            table = correct_and_retrain(spread, labels, root, model, spread_mix)
        row = score_loop(table, classes, spread.truth_of, spread.box_classes, labels)
        rows.append({"spread": spread.name, "strategy": strategy, "k": k, "seed": seed, **row})
    return rows


def pooled_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per strategy and k: right calls pooled over the spreads (whole and not corrected), the
    worst spread, the largest share error and how many spreads are within the target (random:
    each figure averaged over the seeds)."""
    out = []
    for (strategy, k), group in rows.groupby(["strategy", "k"], sort=False):
        per_seed = []
        for _, draw in group.groupby("seed"):
            worst = draw.loc[draw["right_of_boxes"].idxmin()]
            largest = draw.loc[draw["share_error_points"].idxmax()]
            per_seed.append(
                {
                    "right_of_boxes": draw["right"].sum() / draw["boxes"].sum(),
                    "right_of_not_corrected": draw["right_not_corrected"].sum()
                    / (draw["boxes"] - draw["corrected"]).sum(),
                    "concordance_not_corrected": draw["right_not_corrected"].sum()
                    / (draw["matched"] - draw["corrected"]).sum(),
                    "worst_spread_right": worst["right_of_boxes"],
                    "worst_spread": worst["spread"],
                    "largest_share_error": largest["share_error_points"],
                    "largest_error_spread": largest["spread"],
                    "within_target": int((draw["share_error_points"] <= SHARE_TARGET).sum()),
                }
            )
        seeds = pd.DataFrame(per_seed)
        row = {
            "strategy": strategy,
            "k": k,
            "draws": len(seeds),
            "spreads": group["spread"].nunique(),
        }
        for column in seeds.columns:
            if pd.api.types.is_numeric_dtype(seeds[column]):
                row[column] = float(seeds[column].mean())
            else:  # a spread's name: the one most draws name
                row[column] = seeds[column].mode().iloc[0]
        out.append(row)
    return pd.DataFrame(out)


def per_spread_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per spread, strategy and k (random: means over the seeds)."""
    figures = [
        "right_of_boxes",
        "right_of_not_corrected",
        "concordance_not_corrected",
        "share_error_points",
    ]
    table = rows.groupby(["spread", "strategy", "k"], sort=False)[figures].mean().reset_index()
    return table


def correction_loop_report(
    seeds: int = 5,
    ks=CORRECTIONS,
    drop_prior_shift: bool = False,
    unmatched: str = "reject",
    spread_mix: bool = False,
    names: Sequence[str] = (),
    walk: str = "least-sure",
) -> dict[str, pd.DataFrame]:
    """The loop on every annotated Giemsa spread (or those ``names``), from the bundled WT
    model."""
    from pathlib import Path

    from napari_chromosome_sort._sample_data import bundled_model_path
    from napari_chromosome_sort.classification.models.model_io import load_model

    from .data import giemsa_spreads, wt_crops_dir

    model = load_model(bundled_model_path())
    rows = []
    with tempfile.TemporaryDirectory(prefix="loop-datasets-") as root:
        spreads = giemsa_spreads()
        unknown = set(names) - {s.name for s in spreads}
        if unknown:
            raise SystemExit(f"no annotated Giemsa spread named {sorted(unknown)}")
        for spread in spreads:
            if names and spread.name not in names:
                continue
            prepared = prepare_spread(model, spread, wt_crops_dir(), Path(root))
            rows.extend(
                loop_rows(prepared, ks, seeds, drop_prior_shift, unmatched, spread_mix, walk)
            )
    rows = pd.DataFrame(rows)
    return {"per_spread": per_spread_table(rows), "pooled": pooled_table(rows), "runs": rows}
