"""``chromosort sort``: sort whole images into class folders with a sorter model (or train one)."""

from __future__ import annotations

import argparse

from napari_chromosome_sort.cli.common import add_overwrite_argument
from napari_chromosome_sort.cli.train import add_backbone_choice
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.progress import with_tqdm

HELP = "sort a folder of whole images into class sub-folders (copies/links); --train makes a sorter"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``chromosort sort``."""
    parser.add_argument("model", nargs="?", help="sorter model file (to sort)")
    parser.add_argument("input_dir", nargs="?", help="folder of images to sort (recursive)")
    parser.add_argument("--out", help="output folder: <class>/, _review/, predictions.csv")
    parser.add_argument(
        "--link",
        nargs="?",
        const="hard",
        default=None,
        choices=["hard", "sym"],
        help="hard-link (default when given) or symlink instead of copying",
    )
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=0.6,
        help="images with max probability below this go to _review/ (default 0.6)",
    )
    parser.add_argument(
        "--no-tta",
        action="store_true",
        help="no test-time averaging over rotated views: one view per crop",
    )
    add_overwrite_argument(parser, "files in --out")
    train = parser.add_argument_group("training a sorter")
    train.add_argument(
        "--train",
        metavar="DATASET",
        help="train on a folder-per-class set of whole images instead of sorting",
    )
    train.add_argument("--model-out", help="where to write the trained sorter model")
    add_backbone_choice(train)
    train.add_argument(
        "--weights", default=None, help="backbone weights: a file, 'imagenet' (default) or 'random'"
    )
    train.add_argument("--input-size", type=int, default=224)


def run(args: argparse.Namespace) -> int:
    """Run ``chromosort sort``; returns the exit status."""
    if args.train:
        from napari_chromosome_sort.classification.models import model_io
        from napari_chromosome_sort.sorter import sorter_config, train_sorter

        if not args.model_out:
            raise ChromosortError("--train needs --model-out MODEL")
        from napari_chromosome_sort.files.safety import output_path, record_written

        output_path(args.model_out, None, args.overwrite, "model file")
        config = sorter_config(
            backbone=args.backbone, weights=args.weights, input_size=args.input_size
        )
        model = with_tqdm(train_sorter(args.train, config), desc="train sorter")
        record_written([model_io.save_model(model, args.model_out)])
        acc = model.metadata.get("metrics", {}).get("inner_cv_accuracy")
        acc_text = f", inner-CV accuracy {acc:.3f}" if isinstance(acc, float) else ""
        print(f"sorter for classes {model.classes}{acc_text} -> {args.model_out}")
        return 0
    if not (args.model and args.input_dir and args.out):
        raise ChromosortError(
            "usage: chromosort sort MODEL INPUT_DIR --out OUT_DIR "
            "(or --train DATASET --model-out MODEL)"
        )
    # imported when the command runs (numpy and up), so that `chromosort --help` stays fast
    from napari_chromosome_sort.classification.models import model_io
    from napari_chromosome_sort.sorter import TASK, sort_folder

    model = model_io.load_model(args.model)
    if model.metadata.get("task") != TASK:
        import sys

        print(
            "warning: this model was not trained as a whole-image sorter "
            "(chromosome-crop preprocessing applies)",
            file=sys.stderr,
        )
    result = with_tqdm(
        sort_folder(
            model,
            args.input_dir,
            args.out,
            link=args.link,
            min_confidence=args.min_confidence,
            tta=not args.no_tta,
            overwrite=args.overwrite,
        ),
        desc="sort",
    )
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(result.counts.items()))
    print(
        f"{len(result.table)} images -> {result.out_dir} ({counts}; "
        f"{result.n_review} below {args.min_confidence} in _review/)"
    )
    return 0
