"""``chromosort crossval DATASET``: nested stratified k-fold cross-validation of training."""

from __future__ import annotations

import argparse

from .train import add_backbone_arguments

HELP = "cross-validate the classifier on a folder-per-class crop set (features computed once)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
    """Run ``chromosort crossval``; returns the exit status."""
    import json

    from ..classification.training import crossvalidate_folder
    from ..progress import with_tqdm
    from .evaluate import format_report
    from .train import config_from_args

    config = config_from_args(args)
    report = with_tqdm(
        crossvalidate_folder(args.dataset, config, args.folds, args.repeats),
        desc="crossval",
        disable=True if args.quiet else None,
    )
    print(json.dumps(report) if args.json else format_report(report))
    return 0
