"""Grad-CAM maps of a real Giemsa spread, pasted back onto the spread (aligned).

Writes docs/images/gradcam_spread.png: left, the whole spread with the per-object Grad-CAM map
(predicted class) overlaid; right, a zoomed region with the segmentation outlines drawn on top,
showing that each map sits on its chromosome. Also writes docs/images/gradcam_crops.png: a few
crops with their Grad-CAM and predicted class.

    PYTHONPATH=. .venv/bin/python scripts/make_gradcam_figure.py --model MODEL.safetensors \
        [--spread 2.png]   # from the repository root; data root as in validation

Without --model the seed paper's published SqueezeNet is imported (classes A/B/C) with the
canonical appearance preprocessing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from validation.data import data_root, giemsa_dir

REPO = Path(__file__).resolve().parents[1]


def outline(labels: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    inner = ndimage.binary_erosion(labels > 0)
    return (labels > 0) & ~inner


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--spread", default="2.png")
    args = parser.parse_args(argv)

    from napari_chromosome_sort.classification.gradcam import gradcam, overlay
    from napari_chromosome_sort.classification.predict import predict_spread
    from napari_chromosome_sort.files.io import read_image

    if args.model:
        from napari_chromosome_sort.classification.models.model_io import load_model

        model = load_model(args.model)
    else:
        from napari_chromosome_sort.classification.features import Preprocessing
        from napari_chromosome_sort.classification.models.model_io import import_state_dict

        model = import_state_dict(
            data_root().parent / "weights" / "ikemoto2022_squeezenet_1.pth",
            ["A", "B", "C"],
            preprocessing=Preprocessing(size=224, appearance="canonical", geometry="pad"),
        )
    image = read_image(giemsa_dir() / "images" / args.spread)
    result = predict_spread(model, image, gradcam=True)
    heat = result.gradcam_map
    over = overlay(image, heat, alpha=0.6)
    edges = outline(result.segmentation.labels)

    # zoom on the densest part of the map
    from scipy import ndimage

    smooth = ndimage.uniform_filter(heat, 300)
    cy, cx = np.unravel_index(np.argmax(smooth), smooth.shape)
    h, w = heat.shape
    half = 150
    y0, x0 = int(np.clip(cy - half, 0, h - 2 * half)), int(np.clip(cx - half, 0, w - 2 * half))
    zoom = over[y0 : y0 + 2 * half, x0 : x0 + 2 * half].copy()
    zoom[edges[y0 : y0 + 2 * half, x0 : x0 + 2 * half]] = (255, 255, 255)
    zoom = np.asarray(Image.fromarray(zoom).resize((600, 600), Image.NEAREST))

    full = Image.fromarray(over).resize((w * 600 // h, 600))
    scale = 600 / h
    canvas = Image.new("RGB", (full.width + 610, 630), "white")
    canvas.paste(full, (0, 30))
    canvas.paste(Image.fromarray(zoom), (full.width + 10, 30))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle(
        [x0 * scale, 30 + y0 * scale, (x0 + 2 * half) * scale, 30 + (y0 + 2 * half) * scale],
        outline=(255, 255, 0),
        width=2,
    )
    counts = result.table["class"].value_counts().to_dict()
    draw.text(
        (5, 8),
        f"{args.spread}: Grad-CAM (predicted class) of {len(result.table)} chromosomes, "
        f"pasted via CropGeometry; calls {counts}",
        fill=(0, 0, 0),
    )
    draw.text(
        (full.width + 15, 8), "zoom (yellow box): white = segmentation outlines", fill=(0, 0, 0)
    )
    out = REPO / "docs" / "images" / "gradcam_spread.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)

    # per-crop panel
    tiles = []
    for crop, (_, row) in list(zip(result.crops, result.table.iterrows(), strict=True))[:8]:
        cam = gradcam(model, crop.pixels)
        pair = np.concatenate([crop.pixels, overlay(crop.pixels, cam, alpha=0.6)], axis=1)
        tile = Image.fromarray(pair).resize((240, 120))
        d = ImageDraw.Draw(tile)
        d.text((3, 3), f"{row['class']} p={row['p_' + row['class']]:.2f}", fill=(255, 0, 0))
        tiles.append(tile)
    panel = Image.new("RGB", (4 * 244, ((len(tiles) + 3) // 4) * 124), "white")
    for i, t in enumerate(tiles):
        panel.paste(t, ((i % 4) * 244, (i // 4) * 124))
    panel.save(REPO / "docs" / "images" / "gradcam_crops.png")
    print(f"wrote {out.relative_to(REPO)} and gradcam_crops.png; calls {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
