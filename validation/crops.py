"""The classifier on the seed paper's 652 WT crops: nested cross-validation and the published
model imported, as concordance with the researcher, Cohen's kappa and class fractions.

1. ``chromosort crossval`` (5 folds, every default knob chosen inside each training fold) with
   the ImageNet SqueezeNet 1.1 backbone;
2. the seed paper's published model imported with ``import_state_dict`` (its original plain
   preprocessing) on the same crops.
"""

from __future__ import annotations

import contextlib
import io
import json
import time

import pandas as pd

from .data import data_root, squeezenet_weights, wt_crops_dir


def published_model():
    """The seed paper's SqueezeNet file beside the data sets."""
    return data_root().parent / "weights" / "ikemoto2022_squeezenet_1.pth"


def crossval(repeats: int = 1, cache_dir: str | None = None) -> dict:
    """The JSON report of ``chromosort crossval`` on the WT crops, with its run time."""
    from napari_chromosome_sort.cli import main

    argv = ["crossval", str(wt_crops_dir()), "--folds", "5", "--repeats", str(repeats)]
    argv += ["--weights", str(squeezenet_weights()), "--json"]
    if cache_dir:
        argv += ["--cache-dir", str(cache_dir)]
    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    if rc != 0:
        raise SystemExit(f"crossval failed with exit code {rc}")
    report = json.loads(out.getvalue())
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def imported_model() -> dict:
    """The published model's calls on the WT crops, evaluated."""
    from napari_chromosome_sort.analysis.metrics import evaluate
    from napari_chromosome_sort.classification.models.model_io import import_state_dict
    from napari_chromosome_sort.classification.training import scan_folder

    model = import_state_dict(published_model(), ["a", "b", "c"], "squeezenet1_1")
    paths, y, classes = scan_folder(wt_crops_dir())
    pred = model.predict_proba(paths, tta=False).argmax(1)
    return evaluate(y, pred, classes)


def _row(name: str, r: dict) -> dict:
    d = r["distribution"]
    return {
        "run": name,
        "n": r["n"],
        "concordance": r["accuracy"],
        "fold_sd": r.get("accuracy_sd", float("nan")),
        "kappa": r["kappa"],
        **{f"{c}_true": d["true"][c] for c in r["classes"]},
        **{f"{c}_pred": d["pred"][c] for c in r["classes"]},
    }


def crops_report(
    repeats: int = 1, cache_dir: str | None = None, skip_crossval: bool = False
) -> dict[str, pd.DataFrame]:
    rows = []
    if not skip_crossval:
        cv = crossval(repeats, cache_dir)
        rows.append(_row(f"crossval 5-fold x{repeats} ({cv['seconds']} s)", cv))
    rows.append(_row("published model imported (plain preprocessing)", imported_model()))
    return {"runs": pd.DataFrame(rows)}
