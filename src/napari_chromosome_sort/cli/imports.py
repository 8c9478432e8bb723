"""The import commands: what a lab already has becomes this plugin's input.

* ``chromosort import-model PATH --classes A,B,C``: wrap a plain torchvision state_dict.
* ``chromosort import-labels SPREADS/ --boxes LABELS/ --classes a,b,c --out DATASET/``: class
  boxes a lab already has (YOLO or COCO) -> the labelled crop dataset the Label widget makes.
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

from napari_chromosome_sort.cli.common import add_overwrite_argument
from napari_chromosome_sort.cli.train import add_backbone_choice
from napari_chromosome_sort.progress import with_tqdm

IMPORT_MODEL_HELP = (
    "import a plain torchvision state_dict (e.g. the published model of Ikemoto et al. 2022) as "
    "a model file"
)


def import_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``chromosort import-model``."""
    parser.add_argument("path", help="the .pth state_dict (read with weights_only=True)")
    parser.add_argument(
        "--classes", required=True, help="comma-separated class names in the model's output order"
    )
    add_backbone_choice(parser)
    parser.add_argument("--out", required=True, help="model file to write (.safetensors)")
    parser.add_argument(
        "--canonical-appearance",
        action="store_true",
        help="apply canonical_appearance before the original preprocessing",
    )
    add_overwrite_argument(parser, "an existing --out file")


def run_import_model(args: argparse.Namespace) -> int:
    """Run ``chromosort import-model``; returns the exit status."""
    import json

    # imported when the command runs (numpy and up), so that `chromosort --help` stays fast
    from napari_chromosome_sort.classification.features import Preprocessing
    from napari_chromosome_sort.classification.models.model_io import import_state_dict, save_model
    from napari_chromosome_sort.files.safety import output_path, record_written

    output_path(args.out, None, args.overwrite, "model file")  # before any work
    prep = Preprocessing(
        size=224,
        geometry="stretch",
        appearance="canonical" if args.canonical_appearance else "plain",
    )
    classes = [c.strip() for c in args.classes.split(",")]
    model = import_state_dict(args.path, classes, args.backbone, preprocessing=prep)
    path = save_model(model, args.out)
    record_written([path])
    print(
        json.dumps({"model": str(path), "classes": model.classes, "backbone": model.backbone_name})
    )
    return 0


IMPORT_MODEL = SimpleNamespace(
    HELP=IMPORT_MODEL_HELP, add_arguments=import_model_arguments, run=run_import_model
)

IMPORT_LABELS_HELP = "turn spreads with labelled boxes (YOLO or COCO) into a labelled crop dataset"


def import_labels_arguments(parser: argparse.ArgumentParser) -> None:
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


def run_import_labels(args: argparse.Namespace) -> int:
    """Run ``chromosort import-labels``; prints a JSON report and returns the exit status."""
    import json
    import sys

    # imported when the command runs (numpy and up), so that `chromosort --help` stays fast
    from napari_chromosome_sort.files.label_import import import_labels

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


IMPORT_LABELS = SimpleNamespace(
    HELP=IMPORT_LABELS_HELP, add_arguments=import_labels_arguments, run=run_import_labels
)
