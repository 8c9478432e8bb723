"""Synthetic metaphase spreads and chromosome crops with known truth (deterministic per seed).

Chromosomes are drawn as pairs of sister chromatids (rounded rods):

* ``A`` tight: chromatids touching along their whole length;
* ``B`` arms open: chromatids touching at the centromere, arms diverging;
* ``C`` apart: two separate parallel chromatids with a small gap.

Spreads also hold interphase nuclei (large textured discs), debris (small specks) and touching
chromosome pairs (``cluster``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from napari_chromosome_sort.errors import ChromosortError

CLASSES = ("A", "B", "C")
TRUTH_COLUMNS = ["label", "kind", "cls", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"]


@dataclass
class SyntheticSpread:
    """A synthetic spread with its truth: label image and one row per object."""

    image: np.ndarray  # uint8 RGB (giemsa) or uint8 grey (dapi)
    truth_labels: np.ndarray  # int32, 0 = background
    truth: pd.DataFrame  # label, kind, cls, bbox_y0, bbox_x0, bbox_y1, bbox_x1
    modality: str = "giemsa"


def _segment_mask(shape, p0, p1, radius) -> np.ndarray:
    """Mask of a rounded rod (capsule) from p0 to p1 (row, col) with the given radius."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    p0 = np.asarray(p0, np.float32)
    p1 = np.asarray(p1, np.float32)
    d = p1 - p0
    length2 = float(d @ d) or 1e-6
    t = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / length2, 0.0, 1.0)
    dy = yy - (p0[0] + t * d[0])
    dx = xx - (p0[1] + t * d[1])
    return dy * dy + dx * dx <= radius * radius


def chromosome_mask(cls: str, length: float, width: float, angle: float, size: int, rng) -> list:
    """Masks (one per chromatid) of a chromosome of class A/B/C centred in a size x size box."""
    c = np.array([size / 2.0, size / 2.0])
    axis = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-axis[1], axis[0]])
    r = width / 2.0
    half = length / 2.0
    shape = (size, size)
    if cls == "A":
        offset = r * 0.9
        tips = [
            (c - half * axis + s * offset * normal, c + half * axis + s * offset * normal)
            for s in (-1, 1)
        ]
        return [_segment_mask(shape, p0, p1, r) for p0, p1 in tips]
    if cls == "B":
        # centromere at a random position; arms diverge from it by an opening angle
        centro = c + rng.uniform(-0.25, 0.25) * length * axis
        spread = rng.uniform(0.35, 0.6)
        masks = []
        for s in (-1, 1):
            m = np.zeros(shape, bool)
            for direction in (1, -1):
                arm = direction * axis + s * spread * normal
                arm = arm / np.linalg.norm(arm)
                end = centro + arm * (half + direction * float((c - centro) @ axis))
                m |= _segment_mask(shape, centro + s * 0.4 * r * normal, end, r)
            masks.append(m)
        return masks
    if cls == "C":
        offset = r + rng.uniform(0.25, 0.5) * width  # half the gap between the chromatids
        tips = [
            (c - half * axis + s * offset * normal, c + half * axis + s * offset * normal)
            for s in (-1, 1)
        ]
        return [_segment_mask(shape, p0, p1, r) for p0, p1 in tips]
    raise ChromosortError(f"unknown chromosome class {cls!r}; expected one of {CLASSES}")


def _render(darkness: np.ndarray, modality: str, rng) -> np.ndarray:
    """Darkness/brightness map in [0,1] -> uint8 image of the modality with noise."""

    darkness = ndi.gaussian_filter(darkness, 1.0)
    if modality == "giemsa":
        background = np.array([205.0, 200.0, 210.0])
        stain = np.array([95.0, 55.0, 120.0])  # purple
        img = (
            background[None, None, :] * (1 - darkness[..., None])
            + stain[None, None, :] * darkness[..., None]
        )
        img += rng.normal(0, 4.0, img.shape)
        return np.clip(img, 0, 255).astype(np.uint8)
    img = 12.0 + 200.0 * darkness + rng.normal(0, 4.0, darkness.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


class _Canvas:
    """The images of a spread being drawn: darkness, labels, what is occupied, and the truth
    rows of the objects placed so far."""

    def __init__(self, shape: tuple[int, int], rng):
        self.shape, self.rng = shape, rng
        self.darkness = np.zeros(shape, np.float32)
        self.labels = np.zeros(shape, np.int32)
        self.occupied = np.zeros(shape, bool)
        self.rows: list[dict] = []

    def place(self, mask_local: np.ndarray, margin: int = 4):
        """A position where the mask, grown by ``margin``, touches nothing placed so far."""
        H, W = self.shape
        grown = ndi.binary_dilation(np.pad(mask_local, margin), iterations=margin)
        h, w = mask_local.shape
        if h + 2 * margin >= H or w + 2 * margin >= W:
            return None
        for _ in range(300):
            y = int(self.rng.integers(margin, H - h - margin))
            x = int(self.rng.integers(margin, W - w - margin))
            window = self.occupied[y - margin : y + h + margin, x - margin : x + w + margin]
            if not (window & grown).any():
                return y, x
        return None

    def add(self, mask_local, y, x, kind, cls, value):
        """Paint a placed object into the label and darkness images and record its truth row."""
        label = len(self.rows) + 1
        sl = (slice(y, y + mask_local.shape[0]), slice(x, x + mask_local.shape[1]))
        self.labels[sl][mask_local] = label
        self.occupied[sl] |= mask_local
        self.darkness[sl] = np.maximum(self.darkness[sl], value * mask_local)
        ys, xs = np.nonzero(mask_local)
        self.rows.append(
            {
                "label": label,
                "kind": kind,
                "cls": cls,
                "bbox_y0": y + int(ys.min()),
                "bbox_x0": x + int(xs.min()),
                "bbox_y1": y + int(ys.max()) + 1,
                "bbox_x1": x + int(xs.max()) + 1,
            }
        )


def _crop_to_mask(mask):
    """``mask`` cut to its bounding box."""
    ys, xs = np.nonzero(mask)
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _add_nuclei(canvas: _Canvas, n: int, longest: float) -> None:
    """``n`` dome-shaped nuclei with a grainy chromatin texture."""
    rng = canvas.rng
    for _ in range(n):
        radius = int(rng.uniform(1.3, 1.8) * longest)
        box = 2 * radius + 2
        yy, xx = np.mgrid[0:box, 0:box]
        disc = (yy - box / 2) ** 2 + (xx - box / 2) ** 2 <= radius**2
        pos = canvas.place(disc, margin=10)
        if pos is None:
            continue
        y, x = pos
        # dome-shaped (thicker in the middle) with a grainy chromatin texture
        rr = np.sqrt((yy - box / 2) ** 2 + (xx - box / 2) ** 2) / radius
        dome = np.sqrt(np.clip(1.0 - rr**2, 0.0, 1.0))
        grain = ndi.gaussian_filter(rng.random((box, box)), 2.0)
        texture = 0.3 + 0.3 * dome + 0.6 * (grain - grain.mean())
        labels_sl = (slice(y, y + box), slice(x, x + box))
        canvas.add(disc, y, x, "nucleus", "", 1.0)
        canvas.darkness[labels_sl] = np.where(disc, texture, canvas.darkness[labels_sl])


def _add_clusters(canvas: _Canvas, n: int, longest: float, width: float, box: int) -> None:
    """``n`` tangles of four long chromosomes crossing each other (too large to split)."""
    for _ in range(n):
        length = longest * 1.2
        masks = []
        for k in range(4):
            angle = k * np.pi / 4 + canvas.rng.uniform(-0.15, 0.15)
            masks += chromosome_mask("A", length, width, angle, box, canvas.rng)
        union = _crop_to_mask(np.logical_or.reduce(masks))
        pos = canvas.place(union, margin=8)
        if pos is None:
            continue
        canvas.add(union, *pos, "cluster", "", 0.9)


def _add_chromosomes(canvas, n, classes, weights, lengths, width, box) -> None:
    """``n`` single chromosomes of classes drawn with ``weights``."""
    rng = canvas.rng
    for _ in range(n):
        cls = str(rng.choice(classes, p=weights))
        length = rng.uniform(*lengths)
        masks = chromosome_mask(cls, length, width, rng.uniform(0, np.pi), box, rng)
        union = _crop_to_mask(np.logical_or.reduce(masks))
        pos = canvas.place(union, margin=8)
        if pos is None:
            continue
        canvas.add(union, *pos, "chromosome", cls, float(rng.uniform(0.75, 0.95)))


def _add_debris(canvas: _Canvas, n: int) -> None:
    """``n`` small round specks."""
    for _ in range(n):
        r = canvas.rng.uniform(2.2, 2.8)
        yy, xx = np.mgrid[0:7, 0:7]
        speck = (yy - 3) ** 2 + (xx - 3) ** 2 <= r * r
        pos = canvas.place(speck, margin=5)
        if pos is None:
            continue
        canvas.add(speck, *pos, "debris", "", 0.8)


def make_spread(
    seed: int = 0,
    n_chromosomes: int = 30,
    modality: str = "giemsa",
    shape: tuple[int, int] = (512, 512),
    n_nuclei: int = 2,
    n_debris: int = 6,
    n_clusters: int = 2,
    classes: tuple[str, ...] = CLASSES,
    class_weights: tuple[float, ...] | None = None,
    chromosome_length: tuple[float, float] = (18.0, 36.0),
    chromatid_width: float = 5.0,
) -> SyntheticSpread:
    """A synthetic spread with known per-object truth (deterministic per seed)."""
    if modality not in ("giemsa", "dapi"):
        raise ChromosortError(f"unknown modality {modality!r}; expected 'giemsa' or 'dapi'")
    rng = np.random.default_rng(seed)
    weights = np.asarray(
        class_weights if class_weights is not None else [1.0] * len(classes), float
    )
    weights = weights / weights.sum()
    canvas = _Canvas(shape, rng)
    # nuclei first (largest), then tangles, then single chromosomes, then debris
    _add_nuclei(canvas, n_nuclei, chromosome_length[1])
    box = int(chromosome_length[1] * 1.3 + 4 * chromatid_width + 6)
    _add_clusters(canvas, n_clusters, chromosome_length[1], chromatid_width, box)
    _add_chromosomes(
        canvas, n_chromosomes, classes, weights, chromosome_length, chromatid_width, box
    )
    _add_debris(canvas, n_debris)
    image = _render(canvas.darkness, modality, rng)
    truth = pd.DataFrame(canvas.rows, columns=TRUTH_COLUMNS)
    return SyntheticSpread(image=image, truth_labels=canvas.labels, truth=truth, modality=modality)


def make_crop(cls: str, rng, size: int = 64) -> np.ndarray:
    """One dark-on-white RGB crop of a chromosome of class A/B/C (random pose, length, noise)."""

    length = rng.uniform(0.35, 0.6) * size
    width = rng.uniform(0.08, 0.11) * size
    masks = chromosome_mask(cls, length, width, rng.uniform(0, np.pi), size, rng)
    darkness = np.logical_or.reduce(masks).astype(np.float32) * rng.uniform(0.7, 0.95)
    darkness = ndi.gaussian_filter(darkness, rng.uniform(0.6, 1.2))
    stain = np.array([rng.uniform(60, 110), rng.uniform(30, 70), rng.uniform(90, 140)])
    img = 250.0 * (1 - darkness[..., None]) + stain[None, None, :] * darkness[..., None]
    img += rng.normal(0, rng.uniform(2, 8), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_crop_dataset(
    root,
    n_per_class: int = 20,
    seed: int = 0,
    classes: tuple[str, ...] = CLASSES,
    size: int = 64,
) -> Path:
    """Write folder-per-class PNG crops (dark on white) under ``root``; returns ``root``."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for cls in classes:
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(make_crop(cls, rng, size)).save(folder / f"{cls}_{i:04d}.png")
    return root
