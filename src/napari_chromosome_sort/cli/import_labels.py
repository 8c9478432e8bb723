"""``chromosort import-labels SPREADS/ --boxes LABELS/ --classes a,b,c --out DATASET/``: class
boxes a lab already has (YOLO or COCO) -> the labelled crop dataset the Label widget makes."""

from __future__ import annotations

import argparse

HELP = "turn spreads with labelled boxes (YOLO or COCO) into a labelled crop dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``chromosort import-labels``."""
    parser.add_argument("spreads", help="folder of spread images (PNG, JPEG, TIFF...)")
    parser.add_argument(
        "--boxes",
        required=True,
        help="YOLO: folder of <image stem>.txt files (class cx cy w h); COCO: the .json file",
    )
    parser.add_argument("--format", default="yolo", choices=("yolo", "coco"), dest="fmt")
    parser.add_argument(
        "--classes",
        default=None,
        help="class names: YOLO, in the order of the class numbers (e.g. a,b,c; required); "
        "COCO, the categories to keep (default: all)",
    )
    parser.add_argument("--out", required=True, help="the crop dataset folder (made if missing)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the crops of spreads already in the dataset (default: refuse)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``chromosort import-labels``; prints a JSON report and returns the exit status."""
    import json
    import sys

    from ..label_import import import_labels
    from ..progress import with_tqdm

    report = with_tqdm(
        import_labels(args.spreads, args.boxes, args.out, args.fmt, args.classes, args.overwrite),
        "import-labels",
        disable=args.quiet or None,
    )
    summary = report.to_dict()
    for spread in summary["spreads"]:
        if spread["unmatched_boxes"]:
            print(
                f"{spread['spread']}: {spread['unmatched_boxes']} of {spread['boxes']} boxes "
                "match no segmented chromosome (not stored; boxes y0, x0, y1, x1: "
                f"{spread['unmatched']})",
                file=sys.stderr,
            )
    print(json.dumps(summary))
    return 0
