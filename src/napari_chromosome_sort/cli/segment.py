"""``chromosort segment IMAGE... --out DIR``: segment spreads, write labels, objects and crops."""

from __future__ import annotations

import argparse

HELP = "segment metaphase spreads: instance labels, an objects table and chromosome crops"


def add_crossing_score_argument(parser: argparse.ArgumentParser) -> None:
    """``--crossing-score`` (:attr:`.SegmentationParams.crossing_score`), shared with batch."""
    parser.add_argument(
        "--crossing-score",
        default="auto",
        choices=("auto", "on", "off"),
        help="learned crossing score -> cluster: auto (default: fluorescence spreads only) | on | "
        "off (e.g. fluorescence cohesion spreads whose large chromosomes open into X shapes)",
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
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    """Run ``chromosort segment``; returns the exit status."""
    import sys
    from pathlib import Path

    import numpy as np
    import tifffile
    from PIL import Image
    from tqdm import tqdm

    from ..errors import ChromosortError
    from ..io import read_image, require_contrast
    from ..segmentation import SegmentationParams, segment_spread

    paths = [Path(p) for p in args.images]
    for path in paths:
        if not path.is_file():
            raise ChromosortError(f"image file not found: {path}")
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise ChromosortError("two input images share a file name stem; outputs would collide")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ChromosortError(f"cannot create output folder {out}: {error}") from None
    params = SegmentationParams(
        polarity=None if args.polarity == "auto" else args.polarity,
        split_touching=not args.no_split,
        pair_chromatids=not args.no_pairing,
        join_bands=not args.no_band_join,
        crossing_score=args.crossing_score,
        threshold=args.threshold,
    )
    from ..crops import crop_chromosomes
    from ..segmentation.learned import load_segmentation_model, segment_with_model

    model = load_segmentation_model(args.model) if args.model else None

    for path in tqdm(paths, desc="segment", unit="image", disable=args.quiet, file=sys.stderr):
        image = read_image(path)
        try:
            require_contrast(image, f"image {path.name}")
        except ChromosortError as error:
            print(f"{path.name}: skipped: {error}", file=sys.stderr)
            continue
        seg = segment_with_model(image, model, params) if model else segment_spread(image, params)
        folder = out / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(folder / "labels.tif", seg.labels.astype(np.int32), compression=None)
        seg.objects.to_csv(folder / "objects.csv", index=False)
        if args.no_crops:
            continue
        crops_dir = folder / "crops"
        crops_dir.mkdir(exist_ok=True)
        # (crops of a spread that segmentation denoised are denoised too: crop_chromosomes)
        for crop in crop_chromosomes(image, seg, source=str(path)):
            Image.fromarray(np.ascontiguousarray(crop.pixels)).save(
                crops_dir / f"{path.stem}_{crop.label}.png"
            )
        counts = seg.status_counts()
        if not args.quiet:
            summary = ", ".join(f"{k} {v}" for k, v in counts.items())
            if seg.stats.get("denoised"):
                summary += " (noisy image: denoised before segmenting and cropping)"
            print(f"{path.name}: {summary}", file=sys.stderr)
    return 0
