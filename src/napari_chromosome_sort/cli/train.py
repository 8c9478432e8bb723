"""``chromosort train DATASET --out MODEL``: train a classifier on a folder-per-class crop set."""

from __future__ import annotations

import argparse

from napari_chromosome_sort.classification.models.registry import BACKBONES
from napari_chromosome_sort.classification.training import TrainingConfig
from napari_chromosome_sort.classification.training.checks import training_warnings
from napari_chromosome_sort.cli.common import add_overwrite_argument
from napari_chromosome_sort.files.safety import output_path, record_written
from napari_chromosome_sort.progress import with_tqdm

HELP = "train a chromosome classifier (frozen backbone + head) on a folder-per-class crop set"


def add_backbone_choice(parser) -> None:
    """``--backbone`` on ``parser`` (or an argument group): one of the registered backbones
    (classification/models/registry.py)."""
    parser.add_argument(
        "--backbone",
        default="squeezenet1_1",
        choices=list(BACKBONES),
        help="the pretrained network whose features are used (default: %(default)s)",
    )


def add_backbone_arguments(parser: argparse.ArgumentParser) -> None:
    """Backbone, weights, seed, cache, device and input-size options of ``train``/``crossval``."""
    add_backbone_choice(parser)
    parser.add_argument(
        "--weights",
        default=None,
        help="backbone weights: a local .pth/.safetensors file (full or "
        "backbone-only state_dict), 'imagenet' (default: "
        "$CHROMOSORT_WEIGHTS_DIR, torch hub cache, then download) or "
        "'random'",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cache-dir",
        default="auto",
        help="folder for cached features, keyed by image hash + backbone + preprocessing, so "
        "training again on the same crops computes none (default 'auto': the user cache, "
        "$CHROMOSORT_CACHE_DIR/features if set; bounded in size, safe to delete); 'none': "
        "keep features in memory only",
    )
    parser.add_argument("--device", default=None, help="cuda | mps | cpu (default: best)")
    parser.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="network input side in px (default: chosen by inner cross-validation)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``chromosort train``."""
    parser.add_argument("dataset", help="folder with one sub-folder of crops per class")
    parser.add_argument("--out", required=True, help="model file to write (.safetensors)")
    parser.add_argument(
        "--reference",
        default=None,
        help="a second crop set of the same classes from elsewhere (e.g. the published WT "
        "crops), learnt from after moving it onto the look of DATASET's crops",
    )
    parser.add_argument(
        "--design-by-spread",
        action="store_true",
        help="with --reference and crops of 3 or more spreads (the manifest's source): choose "
        "the model design holding out one of DATASET's spreads at a time",
    )
    add_backbone_arguments(parser)
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs for an MLP head / fine-tuning (linear head: L-BFGS)",
    )
    parser.add_argument("--hidden", type=int, default=0, help="MLP hidden units (0 = linear)")
    parser.add_argument(
        "--l2",
        type=float,
        default=None,
        help="L2 strength (default: chosen by inner cross-validation)",
    )
    parser.add_argument(
        "--finetune-blocks",
        type=int,
        default=0,
        help="also fine-tune the last N backbone blocks (slow without a GPU)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_overwrite_argument(parser, "an existing --out file")


def config_from_args(args):
    """A ``TrainingConfig`` from parsed ``train``/``crossval`` arguments."""
    config = TrainingConfig(
        backbone=args.backbone,
        weights=args.weights,
        seed=args.seed,
        cache_dir=args.cache_dir,
        device=args.device,
        input_size=args.input_size,
    )
    for name in ("hidden", "l2", "finetune_blocks"):
        if getattr(args, name, None) is not None:
            setattr(config, name, getattr(args, name))
    if getattr(args, "design_by_spread", False):
        config.design_by_spread = True
    if getattr(args, "epochs", None):
        config.epochs = args.epochs
        config.finetune_epochs = args.epochs
    return config


def run(args: argparse.Namespace) -> int:
    """Run ``chromosort train``; returns the exit status."""
    import json
    import sys

    # imported when the command runs (numpy and up), so that `chromosort --help` stays fast
    from napari_chromosome_sort.classification.models.model_io import save_model
    from napari_chromosome_sort.classification.predict import recorded_priors
    from napari_chromosome_sort.classification.training import train_from_folder
    from napari_chromosome_sort.classification.training.spread_priors import describe

    output_path(args.out, None, args.overwrite, "model file")  # before any work
    model = with_tqdm(
        train_from_folder(args.dataset, config_from_args(args), args.reference),
        desc="train",
        disable=True if args.quiet else None,
    )
    path = save_model(model, args.out)
    record_written([path])
    priors = recorded_priors(model.metadata)
    summary = {
        "model": str(path),
        "classes": model.classes,
        "backbone": model.backbone_name,
        "counts": model.metadata["training"]["counts"],
        "inner_cv_accuracy": model.metadata["metrics"].get("inner_cv_accuracy"),
        "input_size": model.preprocessing.size,
        "geometry": model.preprocessing.geometry,
        "head": model.metadata["training"]["chosen"].get("members"),
        "prediction_priors": priors and {k: v for k, v in priors.items() if k != "candidates"},
    }
    print(json.dumps(summary), file=sys.stdout)
    if priors is not None:
        print(f"note: {describe(priors)}", file=sys.stderr)

    for warning in training_warnings(model.metadata):
        print(f"warning: {warning}", file=sys.stderr)
    return 0
