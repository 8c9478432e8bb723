"""Side-by-side picture + statistics: published WT crops vs raw spread crops, before/after
``canonical_appearance``.

Writes docs/images/appearance_side_by_side.png and prints a markdown table of background level,
chromosome-core level and object-to-crop extent ratio (medians) for both sets, before and after.

    PYTHONPATH=. .venv/bin/python scripts/make_appearance_figure.py   # from the repository root

The data root is validation's (``$CHROMOSORT_DATA``, else ``../shared/data``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from validation.data import giemsa_dir, wt_crops_dir

REPO = Path(__file__).resolve().parents[1]

TILE = 112


def stats(rgb: np.ndarray) -> tuple[float, float, float]:
    from napari_chromosome_sort.classification.appearance import levels, object_mask

    g = rgb.astype(float).mean(2)
    background, core = levels(rgb)
    t = np.clip((g - core) / max(background - core, 1e-6), 0, 1)
    mask = object_mask(t)
    if not mask.any():
        return background, core, float("nan")
    ys, xs = np.nonzero(mask)
    return background, core, max(np.ptp(ys) + 1, np.ptp(xs) + 1) / max(g.shape)


def tile(rgb: np.ndarray) -> np.ndarray:
    """Fit a crop into a TILE x TILE white tile keeping its pixel aspect (shows size too)."""
    h, w = rgb.shape[:2]
    f = TILE / max(h, w)
    small = np.asarray(Image.fromarray(rgb).resize((max(1, round(w * f)), max(1, round(h * f)))))
    out = np.full((TILE, TILE, 3), 255, np.uint8)
    y0, x0 = (TILE - small.shape[0]) // 2, (TILE - small.shape[1]) // 2
    out[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return out


def main() -> int:
    from napari_chromosome_sort.classification.appearance import canonical_appearance
    from napari_chromosome_sort.crops import crop_chromosomes
    from napari_chromosome_sort.files.io import read_image
    from napari_chromosome_sort.segmentation import segment_spread

    rng = np.random.default_rng(0)
    wt_paths = sorted(wt_crops_dir().glob("*/*.jpg"))
    published = [np.asarray(Image.open(p).convert("RGB")) for p in wt_paths]
    spread_crops = []
    for name in ("1.png", "2.png", "3.png"):
        image = read_image(giemsa_dir() / "images" / name)
        spread_crops += [c.pixels for c in crop_chromosomes(image, segment_spread(image))]

    rows = []
    for label, crops in (("published WT crops", published), ("raw spread crops", spread_crops)):
        before = np.array([stats(c) for c in crops])
        after = np.array([stats(canonical_appearance(c)) for c in crops])
        sizes = np.array([max(c.shape[:2]) for c in crops])
        rows.append(
            (label, len(crops), np.median(sizes), np.nanmedian(before, 0), np.nanmedian(after, 0))
        )
    print(
        "| set | n | crop side px (median) | background before -> after | chromosome core "
        "before -> after | extent/crop before -> after |"
    )
    print("|---|---|---|---|---|---|")
    for label, n, side, b, a in rows:
        print(
            f"| {label} | {n} | {side:.0f} | {b[0]:.0f} -> {a[0]:.0f} | {b[1]:.0f} -> "
            f"{a[1]:.0f} | {b[2]:.2f} -> {a[2]:.2f} |"
        )

    n = 8
    pick_p = rng.choice(len(published), n, replace=False)
    pick_s = rng.choice(len(spread_crops), n, replace=False)
    grid = [
        [tile(published[i]) for i in pick_p],
        [tile(canonical_appearance(published[i])) for i in pick_p],
        [tile(spread_crops[i]) for i in pick_s],
        [tile(canonical_appearance(spread_crops[i])) for i in pick_s],
    ]
    titles = [
        "published WT crops (as shipped)",
        "published WT crops, canonical_appearance",
        "raw spread crops (segmented, neighbours blanked, isolated)",
        "raw spread crops, canonical_appearance",
    ]
    band = 18
    height = len(grid) * (TILE + band) + 4
    canvas = Image.new("RGB", (n * (TILE + 4) + 4, height), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (row, title) in enumerate(zip(grid, titles, strict=True)):
        y = r * (TILE + band) + 2
        draw.text((6, y + 2), title, fill=(0, 0, 0))
        for c, t in enumerate(row):
            canvas.paste(Image.fromarray(t), (4 + c * (TILE + 4), y + band))
    out = REPO / "docs" / "images" / "appearance_side_by_side.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    print(f"wrote {out.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
