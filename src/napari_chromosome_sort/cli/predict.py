"""``chromosort predict MODEL INPUT... --out CSV [--spreads] [--gradcam DIR]``."""

from __future__ import annotations

import argparse

from napari_chromosome_sort.cli.common import add_overwrite_argument, read_spread

HELP = "classify crops (files or folders) or, with --spreads, every chromosome of whole spreads"

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def add_views_argument(parser: argparse.ArgumentParser) -> None:
    """``--views N``: dihedral views averaged per crop (default: the model's, 4 rotations)."""
    parser.add_argument(
        "--views",
        type=int,
        default=None,
        choices=range(1, 9),
        metavar="N",
        help="average each crop's class probabilities over N of its 8 rotated/mirrored views "
        "(1-8; default: the number the model records, 4 = the four rotations, as accurate as "
        "8 and twice as fast)",
    )


MODEL_SUFFIXES = (".safetensors", ".pth")


def model_and_inputs(model, inputs: list[str]) -> tuple[str, list[str]]:
    """The model file and the inputs: ``--model``, else a first input that is a model file
    (``chromosort predict MODEL INPUT...``), else the bundled wild-type model."""
    from napari_chromosome_sort._sample_data import bundled_model_path
    from napari_chromosome_sort.errors import ChromosortError

    if model is None and len(inputs) > 1 and inputs[0].lower().endswith(MODEL_SUFFIXES):
        return inputs[0], inputs[1:]
    if model is None:
        return str(bundled_model_path()), inputs
    if not inputs:
        raise ChromosortError("no input images given")
    return model, inputs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``chromosort predict``."""
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="[MODEL] INPUT",
        help="crop images, folders of crops, or spreads; a first argument ending in .safetensors "
        "or .pth is the model (as --model)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="model file from 'chromosort train' or 'import-model' (default: the bundled "
        "wild-type model, classes A/B/C)",
    )
    parser.add_argument("--out", required=True, help="CSV to write (one row per crop/object)")
    parser.add_argument(
        "--spreads",
        action="store_true",
        help="inputs are whole spreads: segment, crop and classify each object",
    )
    parser.add_argument(
        "--gradcam",
        metavar="DIR",
        default=None,
        help="write Grad-CAM heatmaps to DIR (spreads: float TIFF aligned "
        "with the image + PNG overlay; crops: PNG overlay)",
    )
    add_views_argument(parser)
    parser.add_argument(
        "--no-tta", action="store_true", help="no test-time averaging: one view (= --views 1)"
    )
    parser.add_argument(
        "--adapt-priors",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="estimate the class priors of each spread (with --spreads) or of all the crops "
        "together without labels (EM, Saerens et al. 2002) instead of assuming the training "
        "priors (default: as the model records; chosen leave-one-spread-out when it was "
        "trained with --reference on crops of 3 or more spreads, else off; "
        "docs/validation.md)",
    )
    parser.add_argument(
        "--prior-pseudo-counts",
        type=float,
        default=None,
        metavar="A",
        help="Dirichlet pseudo-counts of the estimated priors (MAP-EM; default: as the model "
        "records, else 1.0, spread "
        "evenly over the classes; 0 = maximum-likelihood EM, the former default)",
    )
    parser.add_argument(
        "--prior-method",
        choices=["em", "bbse"],
        default="em",
        help="label-free prior estimate: 'em' (MAP-EM, default) or 'bbse' (confusion-matrix "
        "estimate; needs a model trained with this version; collapses minority classes more "
        "often, see docs/validation.md)",
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="before estimating the priors, apply the temperature/bias calibration that "
        "training stored in the model (models without one: no change)",
    )
    parser.add_argument(
        "--no-pair-rule",
        action="store_true",
        help="with --spreads: let the network call objects that segmentation built from two "
        "separate sister chromatids (by default they are type C, the class named C)",
    )
    add_overwrite_argument(parser, "an existing --out or Grad-CAM file")


def _expand(inputs) -> tuple[list, list]:
    """Input files and, for each, its name relative to the input it came from (a folder's
    images by their path inside it, a file by its name): Grad-CAM files are named by these."""
    from pathlib import Path

    from napari_chromosome_sort.errors import ChromosortError

    files, relatives = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
            if not found:
                raise ChromosortError(f"folder {path} has no images")
            files.extend(found)
            relatives.extend(p.relative_to(path) for p in found)
        elif path.is_file():
            files.append(path)
            relatives.append(Path(path.name))
        else:
            raise ChromosortError(f"input {path} does not exist")
    return files, relatives


def _check_out(out) -> None:
    """Fail before any work when ``--out`` cannot be the CSV file it has to be."""
    from pathlib import Path

    from napari_chromosome_sort.errors import ChromosortError

    out = Path(out)
    if out.is_dir():
        raise ChromosortError(
            f"--out {out} is a folder; give the CSV file to write, e.g. {out}/calls.csv"
        )
    if out.parent.exists() and not out.parent.is_dir():
        raise ChromosortError(f"--out {out}: {out.parent} is a file, not a folder")


def _check_outputs(out, files, gradcam_dir, names, overwrite: bool) -> list:
    """Before any work: no output is one of the inputs, none goes through a link, and none
    replaces a file chromosort did not write (unless ``overwrite``); returns the Grad-CAM paths."""
    import os
    from pathlib import Path

    from napari_chromosome_sort.errors import ChromosortError
    from napari_chromosome_sort.files.safety import no_links, output_path

    inputs = {os.path.realpath(f) for f in files}
    targets = [Path(out)]
    if gradcam_dir is not None:
        try:
            no_links(gradcam_dir.parent, gradcam_dir, "Grad-CAM folder").mkdir(
                parents=True, exist_ok=True
            )
        except OSError as error:
            raise ChromosortError(f"cannot create Grad-CAM folder {gradcam_dir}: {error}") from None
        targets += [gradcam_dir / name for name in names]
    for target in targets:
        if os.path.realpath(target) in inputs:
            raise ChromosortError(f"output {target} is one of the inputs; choose another name")
        output_path(target, None, overwrite, "output")
    return targets[1:]


def _gradcam_names(relatives, suffix: str) -> list[str]:
    """One distinct Grad-CAM file name per input (by its relative path, never by stem only)."""
    from pathlib import Path

    from napari_chromosome_sort.files.safety import flat_names

    return flat_names((Path(r).with_suffix(suffix) for r in relatives), suffix="_gradcam")


def _predict_spreads(args, model, files, relatives, gradcam_dir, priors) -> tuple[list, list]:
    """Every spread through the core's prediction; its Grad-CAM TIFF and PNG when asked; the
    warnings that a spread is unlike the model's training images on stderr. Returns
    ``(tables, files written)``."""
    import sys

    import numpy as np
    import tifffile
    from PIL import Image

    from napari_chromosome_sort.classification.predict import predict_spread
    from napari_chromosome_sort.display.cam_display import (
        masked_to_objects,
        overlay,
        with_colour_bar,
    )
    from napari_chromosome_sort.files.atomic import atomic_path

    tif_names = _gradcam_names(relatives, ".tif")
    png_names = _gradcam_names(relatives, ".png")
    tables, written = [], []
    for n, path in enumerate(files):
        image = read_spread(path)
        if image is None:
            continue
        result = predict_spread(
            model,
            image,
            gradcam=gradcam_dir is not None,
            tta=not args.no_tta,
            priors=priors,
            views=1 if args.no_tta else args.views,
            separated_class=None if args.no_pair_rule else "auto",
        )
        for warning in result.warnings:
            print(f"{path.name}: warning: {warning}", file=sys.stderr)
        table = result.table.copy()
        table.insert(0, "source", str(path))
        tables.append(table)
        if gradcam_dir is not None:
            with atomic_path(gradcam_dir / tif_names[n]) as tmp:
                tifffile.imwrite(tmp, result.gradcam_map.astype(np.float32))
            heat = masked_to_objects(
                result.gradcam_map, result.segmentation.labels, result.table["label"]
            )
            picture = with_colour_bar(overlay(image, heat))
            with atomic_path(gradcam_dir / png_names[n]) as tmp:
                Image.fromarray(picture).save(tmp, format="PNG")
            written += [gradcam_dir / tif_names[n], gradcam_dir / png_names[n]]
        print(f"{path.name}: {len(table)} chromosomes", file=sys.stderr)
    return tables, written


def _predict_crop_files(args, model, files, relatives, gradcam_dir, priors) -> tuple[list, list]:
    """The crop images classified together; a Grad-CAM PNG per crop when asked; the warnings
    that the crops are unlike the model's training crops on stderr. Returns
    ``([table], files written)``."""
    import sys

    from PIL import Image

    from napari_chromosome_sort.classification.predict import predict_crops
    from napari_chromosome_sort.crops import as_rgb_uint8
    from napari_chromosome_sort.files.atomic import atomic_path
    from napari_chromosome_sort.files.io import read_image

    images = [as_rgb_uint8(read_image(p)) for p in files]
    for warning in _crop_warnings(model, files, images):
        print(f"crops: warning: {warning}", file=sys.stderr)
    views = 1 if args.no_tta else args.views
    table = predict_crops(model, images, tta=not args.no_tta, priors=priors, views=views)
    table.insert(0, "source", [str(p) for p in files])
    written = []
    if gradcam_dir is not None:
        from napari_chromosome_sort.classification.gradcam import gradcam
        from napari_chromosome_sort.display.cam_display import overlay, with_colour_bar

        names = _gradcam_names(relatives, ".png")
        for name, image in zip(names, images, strict=True):
            heat = gradcam(model, image)
            with atomic_path(gradcam_dir / name) as tmp:
                Image.fromarray(with_colour_bar(overlay(image, heat))).save(tmp, format="PNG")
            written.append(gradcam_dir / name)
    return [table], written


def _crop_warnings(model, files, images) -> list[str]:
    """The warnings that crops are unlike the model's training crops: cut from spreads of
    another polarity (a crop file the plugin wrote says its spread's), or of another size."""
    from types import SimpleNamespace

    from napari_chromosome_sort.classification.image_match import (
        describe_training_images,
        image_warnings,
    )

    record = describe_training_images(files)
    if not record:
        return []
    crops = [SimpleNamespace(pixels=image) for image in images]
    subject = "these crops were cut from spreads with"
    return image_warnings(model, None, record["polarity"], crops, subject)


def run(args: argparse.Namespace) -> int:
    """Run ``chromosort predict``; returns the exit status."""
    import sys
    from pathlib import Path

    import pandas as pd

    from napari_chromosome_sort.classification.models.model_io import load_model
    from napari_chromosome_sort.classification.predict import PriorOptions
    from napari_chromosome_sort.files.atomic import write_csv_atomic
    from napari_chromosome_sort.files.safety import record_written

    priors = PriorOptions(
        adapt=args.adapt_priors,
        pseudo_counts=args.prior_pseudo_counts,
        method=args.prior_method,
        calibrate=args.calibrate,
    )
    _check_out(args.out)
    args.model, args.inputs = model_and_inputs(args.model, args.inputs)
    model = load_model(args.model)
    files, relatives = _expand(args.inputs)
    gradcam_dir = Path(args.gradcam) if args.gradcam else None
    suffixes = (".tif", ".png") if args.spreads else (".png",)
    names = [name for suffix in suffixes for name in _gradcam_names(relatives, suffix)]
    _check_outputs(args.out, files, gradcam_dir, names, args.overwrite)
    predict = _predict_spreads if args.spreads else _predict_crop_files
    tables, written = predict(args, model, files, relatives, gradcam_dir, priors)
    columns = ["source", "label", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1", "class"]
    columns += [f"p_{c}" for c in model.classes] + ["called_by"]  # called_by: spreads only
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns)
    table = table[[c for c in columns if c in table.columns]]
    write_csv_atomic(table, args.out)
    record_written([Path(args.out), *written])
    counts = table["class"].value_counts().to_dict() if len(table) else {}
    print(f"{len(table)} rows -> {args.out} {counts}", file=sys.stderr)
    return 0
