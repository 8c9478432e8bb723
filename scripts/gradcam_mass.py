"""Focus of Grad-CAM maps on a real spread: share of each crop's map mass on its chromosome.

Segments one Giemsa spread, computes the Grad-CAM of every kept crop (predicted class), pastes it
back through ``CropGeometry`` and prints, over the crops, the median share of the map's mass that
falls on the object's own segmentation mask, next to the median share of the mapped window that
the object covers (the value a map without any focus would get).

    python scripts/gradcam_mass.py MODEL.safetensors [--spread 3.png] \
        [--modes head last head:zero last:blank]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO / "src"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--spread", default="3.png")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["head", "last"],
        help="LAYERS[:REFERENCE] of gradcam(); default: the default map and the classic one",
    )
    args = parser.parse_args(argv)

    from napari_chromosome_sort.classification.gradcam import gradcam
    from napari_chromosome_sort.classification.model_io import load_model
    from napari_chromosome_sort.crops import crop_chromosomes
    from napari_chromosome_sort.io import read_image
    from napari_chromosome_sort.segmentation import segment_spread

    model = load_model(args.model)
    image = read_image(SHARED / "data" / "giemsa_spreads_ddx11" / "images" / args.spread)
    segmentation = segment_spread(image)
    crops = crop_chromosomes(image, segmentation)
    for mode in args.modes:
        layers, _, reference = mode.partition(":")
        mass, area = [], []
        for crop in crops:
            heat = gradcam(model, crop.pixels, layers=layers, reference=reference or None)
            full = crop.geometry.to_image(heat)
            mask = segmentation.labels == crop.label
            if full.sum() > 0:
                mass.append(full[mask].sum() / full.sum())
                area.append(mask[full > 0].mean())
        print(
            f"{args.model.name} {mode}: {len(mass)} crops, median mass on object "
            f"{np.median(mass):.3f} (mean {np.mean(mass):.3f}); object share of the mapped "
            f"window {np.median(area):.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
