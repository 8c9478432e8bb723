"""``chromosort segment IMAGE... --out DIR``: segment spreads, write labels, objects and crops."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_chromosome_sort.cli.common import add_overwrite_argument, read_spread
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.atomic import atomic_path, write_bytes_atomic, write_csv_atomic
from napari_chromosome_sort.files.safety import (
    check_name,
    claim_folder,
    no_links,
    output_path,
    owns,
    record_written,
    remove_owned,
)

HELP = "segment metaphase spreads: instance labels, an objects table and chromosome crops"
#: the defaults of the learned steps' switches in :class:`.SegmentationParams`
LEARNED_STEP_DEFAULTS = {"crossing_score": "off", "pixel_classes": "auto", "junction_score": "auto"}


def add_crossing_score_argument(parser: argparse.ArgumentParser) -> None:
    """The learned segmentation steps' switches (``--crossing-score``, ``--pixel-classes``,
    ``--junction-score``), shared with batch; their defaults are those of
    :class:`.SegmentationParams` (:data:`LEARNED_STEP_DEFAULTS`, not read from it here so that
    ``--help`` does not import scikit-image; a test pins them)."""
    defaults = argparse.Namespace(**LEARNED_STEP_DEFAULTS)
    parser.add_argument(
        "--crossing-score",
        default=defaults.crossing_score,
        choices=("auto", "on", "off"),
        help=f"learned crossing score -> cluster: auto (fluorescence spreads only) | on | off "
        f"(default: {defaults.crossing_score}; it sets aside more crossings and costs about 2 "
        "in 100 single chromosomes)",
    )
    parser.add_argument(
        "--pixel-classes",
        default=defaults.pixel_classes,
        choices=("auto", "on", "off"),
        help="learned pixel classes cut clusters into chromosomes: auto (fluorescence spreads "
        f"only) | on | off (default: {defaults.pixel_classes})",
    )
    parser.add_argument(
        "--junction-score",
        default=defaults.junction_score,
        choices=("auto", "on", "off"),
        help="learned cuts of two touching chromosomes kept as one object: auto (fluorescence "
        f"spreads only) | on | off (default: {defaults.junction_score})",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``chromosort segment``."""
    parser.add_argument("images", nargs="+", help="spread image files (PNG, JPEG, TIFF...)")
    parser.add_argument("--out", required=True, help="output folder (one sub-folder per image)")
    parser.add_argument(
        "--polarity",
        default="auto",
        choices=("auto", "dark_on_light", "bright_on_dark"),
        help="auto (default) | dark_on_light (Giemsa bright-field) | bright_on_dark (DAPI)",
    )
    parser.add_argument(
        "--no-split", action="store_true", help="do not split touching chromosomes (watershed)"
    )
    parser.add_argument(
        "--no-pairing",
        action="store_true",
        help="do not group separated sister chromatids (type C) into one object",
    )
    parser.add_argument(
        "--no-band-join",
        action="store_true",
        help="do not join the pieces of a chromosome cut at a dark band",
    )
    add_crossing_score_argument(parser)
    parser.add_argument(
        "--threshold", type=float, default=None, help="fixed object threshold (default: automatic)"
    )
    parser.add_argument(
        "--model",
        default=None,
        help="a segmentation model from 'chromosort segment-learn' (its settings and classifier)",
    )
    parser.add_argument("--no-crops", action="store_true", help="skip writing crops")
    add_overwrite_argument(parser, "files in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    """Run ``chromosort segment``; returns the exit status."""
    import sys

    from tqdm import tqdm

    # imported when the command runs (numpy and up), so that `chromosort --help` stays fast
    from napari_chromosome_sort.segmentation import segment_spread
    from napari_chromosome_sort.segmentation.learned import (
        load_segmentation_model,
        segment_with_model,
    )

    paths, out = _checked_inputs(args)
    params = _params_from_args(args)
    model = load_segmentation_model(args.model) if args.model else None
    for path in tqdm(paths, desc="segment", unit="image", disable=args.quiet, file=sys.stderr):
        image = read_spread(path)
        if image is None:
            continue
        seg = segment_with_model(image, model, params) if model else segment_spread(image, params)
        _write_spread(out, path, image, seg, crops=not args.no_crops)
        if not args.quiet and not args.no_crops:  # (a summary beside the crops)
            summary = ", ".join(f"{k} {v}" for k, v in seg.status_counts().items())
            if seg.stats.get("denoised"):
                summary += " (noisy image: denoised before segmenting and cropping)"
            tqdm.write(f"{path.name}: {summary}", file=sys.stderr)  # a line of its own
    return 0


def _checked_inputs(args):
    """(image paths, output folder) once every image exists, their stems are distinct names
    and every spread folder may be written."""
    paths = [Path(p) for p in args.images]
    for path in paths:
        if not path.is_file():
            raise ChromosortError(f"image file not found: {path}")
    stems = [p.stem for p in paths]
    for n, stem in enumerate(stems):
        if stem in stems[:n]:
            first = paths[stems.index(stem)]
            raise ChromosortError(
                f"{first} and {paths[n]} would both write {Path(args.out) / stem}; segment them "
                "into different --out folders, or rename one"
            )
    for path in paths:
        check_name(path.stem, f"image name {path.name!r} cannot name an output folder:")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ChromosortError(f"cannot create output folder {out}: {error}") from None
    for stem in stems:
        _check_spread_folder(out, stem, args.overwrite)
    return paths, out


def _params_from_args(args):
    """The :class:`.SegmentationParams` of the command line."""
    from napari_chromosome_sort.segmentation import SegmentationParams  # numpy and up

    return SegmentationParams(
        polarity=None if args.polarity == "auto" else args.polarity,
        split_touching=not args.no_split,
        pair_chromatids=not args.no_pairing,
        join_bands=not args.no_band_join,
        crossing_score=args.crossing_score,
        pixel_classes=args.pixel_classes,
        junction_score=args.junction_score,
        threshold=args.threshold,
    )


def _write_spread(out: Path, path: Path, image, seg, crops: bool) -> None:
    """``out/<stem>``: labels.tif, objects.csv and (with ``crops``) a crop per chromosome."""
    import numpy as np
    import tifffile

    from napari_chromosome_sort.crops import crop_chromosomes, crop_png_bytes  # numpy and up

    folder = out / path.stem
    folder.mkdir(exist_ok=True)  # checked: no link (_check_spread_folder)
    with atomic_path(folder / "labels.tif") as tmp:
        tifffile.imwrite(tmp, seg.labels.astype(np.int32), compression=None)
    write_csv_atomic(seg.objects, folder / "objects.csv")
    written = [folder / "labels.tif", folder / "objects.csv"]
    _remove_old_crops(folder, path.stem)  # a second run never leaves stale crops beside
    if crops:
        crops_dir = folder / "crops"
        claim_folder(crops_dir, out)
        # (crops of a spread that segmentation denoised are denoised too: crop_chromosomes)
        for crop in crop_chromosomes(image, seg, source=str(path)):
            name = crops_dir / f"{path.stem}_{crop.label}.png"
            write_bytes_atomic(name, crop_png_bytes(crop.pixels, crop.polarity))
            written.append(name)
    record_written(written)


def _check_spread_folder(out, stem: str, overwrite: bool) -> None:
    """``out/stem`` may be written: not a link, and its labels and table not files chromosort
    did not write (unless ``overwrite``); a crops folder of someone else is refused."""
    folder = no_links(out, out / stem, "spread folder")
    for name in ("labels.tif", "objects.csv"):
        output_path(folder / name, out, overwrite, "output")
    crops = no_links(out, folder / "crops", "crops folder")
    if crops.is_dir() and any(crops.iterdir()) and not owns(crops) and not overwrite:
        raise ChromosortError(
            f"{crops} holds files chromosort did not write; choose another --out or pass "
            "--overwrite"
        )


def _remove_old_crops(folder, stem: str) -> None:
    """Crops an earlier run wrote for this spread (only in the tool's own crops folder, only
    names of ours), so the folder holds this run's crops only."""
    import re

    crops = folder / "crops"
    if not owns(crops):
        return
    pattern = rf"\.?{re.escape(stem)}_\d+\.png(\..*\.tmp.*)?"
    for old in crops.iterdir():
        if re.fullmatch(pattern, old.name):
            remove_owned(old, crops, pattern, "crop")
