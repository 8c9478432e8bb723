"""``chromosort segment-learn IMAGE... --truth PATH --out MODEL``: learn a segmentation model."""

from __future__ import annotations

import argparse

from napari_chromosome_sort.cli.common import add_overwrite_argument
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.safety import output_path, record_written

HELP = "learn a segmentation model (settings + object classifier) from annotated spreads"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``chromosort segment-learn``."""
    parser.add_argument("images", nargs="+", help="annotated spread image files")
    parser.add_argument(
        "--truth",
        required=True,
        help="a folder of YOLO .txt files named like the images, a COCO .json file, or a "
        "'chromosort segment' output folder whose objects the user corrected",
    )
    parser.add_argument("--out", required=True, help="model file to write (.json)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="objects at least this likely to be chromosomes are kept (default 0.5)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    add_overwrite_argument(parser, "an existing --out file")


def run(args) -> int:
    """Run ``chromosort segment-learn``; returns the exit status."""
    import sys
    from pathlib import Path

    # imported when the command runs (numpy and up), so that `chromosort --help` stays fast
    from napari_chromosome_sort.files.io import read_image
    from napari_chromosome_sort.segmentation.learned import TrainingSpread, learn_segmentation
    from napari_chromosome_sort.segmentation.truth import read_truth

    if not 0 < args.threshold < 1:
        raise ChromosortError("--threshold must be between 0 and 1")
    output_path(args.out, None, args.overwrite, "model file")  # before any work
    spreads = []
    for name in args.images:
        path = Path(name)
        if not path.is_file():
            raise ChromosortError(f"image file not found: {path}")
        image = read_image(path)
        spreads.append(TrainingSpread(path.name, image, read_truth(args.truth, path, image.shape)))

    def progress(message: str) -> None:
        """Print ``message`` on stderr unless ``--quiet``."""
        if not args.quiet:
            print(message, file=sys.stderr)

    model = learn_segmentation(spreads, threshold=args.threshold, progress=progress)
    record_written([model.save(args.out)])
    if not args.quiet:
        counts = ", ".join(f"{k} {v}" for k, v in model.examples.items())
        print(
            f"learned from {len(spreads)} spread(s) ({counts}); settings {model.settings}; "
            f"wrote {args.out}",
            file=sys.stderr,
        )
    return 0
