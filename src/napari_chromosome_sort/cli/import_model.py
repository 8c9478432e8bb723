"""``chromosort import-model PATH --classes A,B,C``: wrap a plain torchvision state_dict."""

from __future__ import annotations

import argparse

from .train import add_backbone_choice

HELP = (
    "import a plain torchvision state_dict (e.g. the published model of Ikemoto et al. 2022) as "
    "a model file"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
    """Run ``chromosort import-model``; returns the exit status."""
    import json

    from ..classification.features import Preprocessing
    from ..classification.model_io import import_state_dict, save_model

    prep = Preprocessing(
        size=224,
        geometry="stretch",
        appearance="canonical" if args.canonical_appearance else "plain",
    )
    classes = [c.strip() for c in args.classes.split(",")]
    model = import_state_dict(args.path, classes, args.backbone, preprocessing=prep)
    path = save_model(model, args.out)
    print(
        json.dumps({"model": str(path), "classes": model.classes, "backbone": model.backbone_name})
    )
    return 0
