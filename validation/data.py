"""Where the real data sets live, and how each is read."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_chromosome_sort.files.io import read_image

from .boxes import read_yolo_boxes

REPO = Path(__file__).resolve().parents[1]
DATA_ENV = "CHROMOSORT_DATA"


def data_root() -> Path:
    """The real data sets: ``$CHROMOSORT_DATA``, else ``../shared/data`` beside the repository."""
    return Path(os.environ.get(DATA_ENV, REPO.parent / "shared" / "data"))


def giemsa_dir(root: Path | None = None) -> Path:
    return (root or data_root()) / "giemsa_spreads_ddx11"


def dapi_dir(root: Path | None = None) -> Path:
    return (root or data_root()) / "adir_dapi_spreads"


def wt_crops_dir(root: Path | None = None) -> Path:
    return (root or data_root()) / "ikemoto_crops_wt"


def squeezenet_weights(root: Path | None = None) -> Path:
    """The ImageNet SqueezeNet 1.1 backbone file beside the data sets."""
    return (root or data_root()).parent / "weights" / "squeezenet1_1_imagenet_features.pth"


@dataclass
class AnnotatedSpread:
    """A Giemsa spread with its YOLO boxes as (cls, y0, x0, y1, x1) rows."""

    name: str
    image: np.ndarray
    boxes: np.ndarray

    @property
    def classes(self) -> np.ndarray:
        return self.boxes[:, 0].astype(int)


def giemsa_spreads(folder: Path | None = None) -> list[AnnotatedSpread]:
    """Every annotated spread of ``images/*.png`` + ``labels/*.txt``, in name order."""
    folder = folder or giemsa_dir()
    spreads = []
    for path in sorted((folder / "images").glob("*.png")):
        image = read_image(path)
        boxes = read_yolo_boxes(folder / "labels" / f"{path.stem}.txt", image.shape)
        spreads.append(AnnotatedSpread(path.name, image, boxes))
    return spreads


def dapi_pairs(folder: Path | None = None) -> list[tuple[Path, Path]]:
    """(DAPI image, K.tif karyotype truth) of every spread that has truth."""
    folder = folder or dapi_dir()
    pairs = []
    for dapi in sorted(folder.glob("*/*D.tif")):
        truth = dapi.with_name(dapi.name[:-5] + "K.tif")
        if truth.exists():
            pairs.append((dapi, truth))
    return pairs


def read_dapi_pair(dapi: Path, truth_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The DAPI image and its K.tif truth (classes 1-24, overlap 255) as a 2-D array."""
    truth = read_image(truth_path)
    return read_image(dapi), truth[..., 0] if truth.ndim == 3 else truth


def slide_group(name: str) -> str:
    """The probe-kit group of an ADIR image (its first letter: A, P or V)."""
    return name[0]
