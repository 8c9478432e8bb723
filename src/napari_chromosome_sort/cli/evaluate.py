"""``chromosort evaluate MODEL DATASET``: agreement of a model with a labelled crop folder.

Also ``chromosort crossval DATASET``: nested stratified k-fold cross-validation of training.
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

from napari_chromosome_sort.cli.train import add_backbone_arguments, config_from_args
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.progress import with_tqdm

HELP = "evaluate a model on a folder-per-class crop set (concordance, kappa, confusion)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``chromosort evaluate``."""
    parser.add_argument("model", help="model file (.safetensors from train/import-model)")
    parser.add_argument("dataset", help="folder with one sub-folder of crops per class")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument(
        "--no-tta",
        action="store_true",
        help="no test-time averaging over rotated views: one view per crop",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def format_report(report: dict) -> str:
    """A metrics report as text: concordance and kappa (with the spread over folds when
    cross-validated), confusion matrix and per-class figures."""
    lines = [
        f"n = {report['n']}  concordance = {report['accuracy']:.3f}  kappa = {report['kappa']:.3f}"
    ]
    if "accuracy_sd" in report:
        lines[0] += f"  (folds: {report['accuracy_mean']:.3f} +- {report['accuracy_sd']:.3f})"
    classes = report["classes"]
    lines.append("true\\pred " + " ".join(f"{c:>6}" for c in classes))
    for c, row in zip(classes, report["confusion"]["counts"], strict=False):
        lines.append(f"{c:>9} " + " ".join(f"{v:>6}" for v in row))
    for c in classes:
        pc = report["per_class"][c]
        lines.append(
            f"{c}: precision {pc['precision']:.3f} recall {pc['recall']:.3f} "
            f"F1 {pc['f1']:.3f} (n={pc['support']}); true {report['distribution']['true'][c]:.3f} "
            f"pred {report['distribution']['pred'][c]:.3f}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``chromosort evaluate``; returns the exit status."""
    import json

    import numpy as np
    from tqdm import tqdm

    # imported when the command runs (numpy and up), so that `chromosort --help` stays fast
    from napari_chromosome_sort.analysis.metrics import evaluate
    from napari_chromosome_sort.classification.models.model_io import load_model
    from napari_chromosome_sort.classification.training import scan_folder

    model = load_model(args.model)
    paths, targets, classes = scan_folder(args.dataset)
    unknown = [c for c in classes if c not in model.classes]
    if unknown:
        raise ChromosortError(
            f"dataset classes {unknown} are not among the model's classes {model.classes}"
        )
    mapping = np.array([model.classes.index(c) for c in classes])
    y = mapping[targets]
    preds = []
    step = 64
    for start in tqdm(
        range(0, len(paths), step),
        desc="evaluate",
        leave=False,
        disable=True if args.quiet else None,
    ):
        proba = model.predict_proba(paths[start : start + step], tta=not args.no_tta)
        preds.append(proba.argmax(1))
    report = evaluate(y, np.concatenate(preds), model.classes)
    print(json.dumps(report) if args.json else format_report(report))
    return 0


CROSSVAL_HELP = (
    "cross-validate the classifier on a folder-per-class crop set (features computed once)"
)


def crossval_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``chromosort crossval``."""
    parser.add_argument("dataset", help="folder with one sub-folder of crops per class")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1)
    add_backbone_arguments(parser)
    parser.add_argument("--hidden", type=int, default=0, help="MLP hidden units (0 = linear)")
    parser.add_argument(
        "--l2",
        type=float,
        default=None,
        help="fixed L2 strength (default: chosen by inner CV in each fold)",
    )
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_crossval(args: argparse.Namespace) -> int:
    """Run ``chromosort crossval``; returns the exit status."""
    import json

    # imported when the command runs (numpy and up), so that `chromosort --help` stays fast
    from napari_chromosome_sort.classification.training import crossvalidate_folder

    config = config_from_args(args)
    report = with_tqdm(
        crossvalidate_folder(args.dataset, config, args.folds, args.repeats),
        desc="crossval",
        disable=True if args.quiet else None,
    )
    print(json.dumps(report) if args.json else format_report(report))
    return 0


CROSSVAL = SimpleNamespace(HELP=CROSSVAL_HELP, add_arguments=crossval_arguments, run=run_crossval)
