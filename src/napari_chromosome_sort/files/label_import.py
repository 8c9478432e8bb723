"""Labels a lab already has -> the labelled crop dataset the Label widget makes.

A folder of spreads with class-labelled boxes (YOLO ``.txt`` files named like the images, or one
COCO JSON file) becomes a :class:`~.dataset.CropDataset`: every spread is segmented and cropped
as the pipeline does it (``segment_spread`` -> ``crop_chromosomes``), each kept object is matched
one-to-one to a box (IoU >= 0.5, the matching of ``segmentation.truth``) and stored under the
box's class. Boxes no kept object matches are reported, never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_chromosome_sort.crops import crop_chromosomes
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.dataset import CropDataset
from napari_chromosome_sort.files.io import IMAGE_SUFFIXES, read_image
from napari_chromosome_sort.progress import Progress
from napari_chromosome_sort.segmentation import segment_spread
from napari_chromosome_sort.segmentation.truth import (
    BOX_COLUMNS,
    box_iou,
    greedy_match,
    read_yolo,
    read_yolo_classes,
)

FORMATS = ("yolo", "coco")


@dataclass
class LabelledCrops:
    """The crops the pipeline cuts from one spread and the box class of each (-1: no box)."""

    crops: list  # crops.Crop, in the segmentation's kept-object order
    objects: object  # pandas table of the kept objects, one row per crop
    box_classes: np.ndarray  # (n_boxes,) class index of every box
    box_of: dict[int, int]  # crop row -> box row

    @property
    def targets(self) -> np.ndarray:
        """Per crop: the class index of its box, or -1 when no box matched it."""
        out = np.full(len(self.crops), -1, int)
        for row, box in self.box_of.items():
            out[row] = self.box_classes[box]
        return out

    @property
    def unmatched_boxes(self) -> list[int]:
        """Rows of the boxes no kept object matched."""
        return sorted(set(range(len(self.box_classes))) - set(self.box_of.values()))


@dataclass
class ImportReport:
    """What :func:`import_labels` did, per spread and in total."""

    spreads: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        total = {
            key: sum(s[key] for s in self.spreads)
            for key in ("boxes", "kept_objects", "stored", "unmatched_boxes")
        }
        return {"spreads": self.spreads, "total": total, "counts": self.counts}


def parse_classes(text: str | Sequence[str] | None) -> list[str] | None:
    """``"a,b,c"`` -> ``["a", "b", "c"]`` (None stays None); empty names are refused."""
    if text is None:
        return None
    names = [c.strip() for c in (text.split(",") if isinstance(text, str) else text)]
    if not names or any(not n for n in names):
        raise ChromosortError(f"--classes needs comma-separated names, got {text!r}")
    if len(set(names)) != len(names):
        raise ChromosortError(f"--classes names a class twice: {text!r}")
    return names


def read_yolo_labels(path: Path, shape, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (n, 4: y0, x0, y1, x1 px) and class indices of a YOLO file; an index with no name
    in ``classes`` is refused."""
    boxes = read_yolo(path, shape)
    index = read_yolo_classes(path)
    bad = sorted({int(i) for i in index if not 0 <= i < len(classes)})
    if bad:
        raise ChromosortError(
            f"{path} uses class index {bad[0]}, but --classes names {len(classes)} "
            f"({', '.join(classes)})"
        )
    return boxes.reshape(-1, 4), index.astype(int)


def read_coco_labels(
    data: dict, image_name: str, classes: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Boxes, class indices and class names of one image of a COCO file. ``classes``: the
    category names to keep, in this order (others are skipped); None: every category, in the
    file's order."""
    try:
        images = {Path(im["file_name"]).name: im["id"] for im in data["images"]}
        stems = {Path(name).stem: i for name, i in images.items()}
        names = {c["id"]: str(c["name"]) for c in data["categories"]}
        image_id = images.get(Path(image_name).name, stems.get(Path(image_name).stem))
        order = list(classes) if classes is not None else list(dict.fromkeys(names.values()))
        unknown = [c for c in order if c not in names.values()]
        if unknown:
            raise ChromosortError(
                f"the COCO file has no category {unknown[0]!r} "
                f"(its categories: {', '.join(dict.fromkeys(names.values()))})"
            )
        rows, index = [], []
        for a in data["annotations"] if image_id is not None else ():
            name = names.get(a.get("category_id"))
            if a["image_id"] != image_id or name not in order:
                continue
            x, y, w, h = (float(v) for v in a["bbox"])
            rows.append((y, x, y + h, x + w))
            index.append(order.index(name))
    except (KeyError, TypeError, ValueError) as exc:
        raise ChromosortError(f"not a COCO annotation file (missing or bad {exc})") from None
    return np.array(rows, float).reshape(-1, 4), np.array(index, int), order


def labelled_crops(image: np.ndarray, boxes: np.ndarray, box_classes, params=None) -> LabelledCrops:
    """Segment and crop ``image`` as the pipeline does and match the kept objects to ``boxes``
    (n, 4: y0, x0, y1, x1) one-to-one at IoU >= 0.5."""
    seg = segment_spread(image, params)
    crops = crop_chromosomes(image, seg)
    objects = seg.objects.set_index("label").loc[[c.label for c in crops]].reset_index()
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    found = objects[BOX_COLUMNS].to_numpy(float).reshape(-1, 4)
    pairs = greedy_match(box_iou(boxes, found)) if len(boxes) and len(found) else []
    return LabelledCrops(
        crops, objects, np.asarray(box_classes, int), {obj: box for box, obj in pairs}
    )


def spread_images(folder: Path) -> list[Path]:
    """The images of a folder of spreads, in name order (refused when there is none)."""
    if not folder.is_dir():
        raise ChromosortError(f"spread folder {folder} does not exist")
    paths = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not paths:
        raise ChromosortError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return paths


def _boxes_reader(boxes: Path, fmt: str, classes: list[str] | None):
    """A function image path, shape -> (boxes, class indices, class names) for ``fmt``."""
    if fmt not in FORMATS:
        raise ChromosortError(f"unknown box format {fmt!r}; use {' or '.join(FORMATS)}")
    if fmt == "yolo":
        if classes is None:
            raise ChromosortError("YOLO boxes carry class numbers: name them with --classes a,b,c")
        if not boxes.is_dir():
            raise ChromosortError(f"YOLO boxes must be a folder of .txt files, got {boxes}")

        def read(path: Path, shape):
            for candidate in (boxes / f"{path.stem}.txt", boxes / "labels" / f"{path.stem}.txt"):
                if candidate.is_file():
                    return (*read_yolo_labels(candidate, shape, classes), classes)
            return np.zeros((0, 4)), np.zeros(0, int), classes

        return read
    try:
        data = json.loads(Path(boxes).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChromosortError(f"cannot read COCO file {boxes}: {exc}") from None
    return lambda path, shape: read_coco_labels(data, path.name, classes)


def import_labels(
    spreads: str | Path,
    boxes: str | Path,
    out: str | Path,
    fmt: str = "yolo",
    classes: str | Sequence[str] | None = None,
    overwrite: bool = False,
    params=None,
) -> Generator[Progress, None, ImportReport]:
    """Every spread of ``spreads`` cut into the pipeline's crops, stored in the dataset ``out``
    under the class of the box each matches. A spread already in the dataset (a manifest row
    with its name as source) is refused unless ``overwrite``: then its old crops are removed
    first. Returns the report (boxes, kept objects, stored crops, unmatched boxes per spread)."""
    paths = spread_images(Path(spreads))
    read_boxes = _boxes_reader(Path(boxes), fmt, parse_classes(classes))
    dataset = CropDataset(out, classes=())
    manifest = dataset.manifest()
    already = sorted({p.name for p in paths} & set(manifest["source"].astype(str)))
    if already and not overwrite:
        raise ChromosortError(
            f"{out} already holds crops of {', '.join(already[:3])}"
            f"{' ...' if len(already) > 3 else ''}: pass --overwrite to replace them"
        )
    report = ImportReport()
    for i, path in enumerate(paths):
        yield Progress(i, len(paths), f"{path.name}: segmenting and matching boxes")
        image = read_image(path)
        box_rows, box_classes, names = read_boxes(path, image.shape)
        labelled = labelled_crops(image, box_rows, box_classes, params)
        if path.name in already:
            for file in manifest.loc[manifest["source"] == path.name, "file"]:
                dataset.remove(file)
        for row, box in sorted(labelled.box_of.items()):
            crop = labelled.crops[row]
            bbox = [int(v) for v in labelled.objects.loc[row, BOX_COLUMNS]]
            cls = names[box_classes[box]]
            dataset.add(crop.pixels, cls, path.name, crop.label, bbox, polarity=crop.polarity)
        report.spreads.append(
            {
                "spread": path.name,
                "boxes": len(box_rows),
                "kept_objects": len(labelled.crops),
                "stored": len(labelled.box_of),
                "unmatched_boxes": len(labelled.unmatched_boxes),
                "unmatched": [[int(v) for v in box_rows[b]] for b in labelled.unmatched_boxes],
            }
        )
    report.counts = dataset.counts()
    yield Progress(len(paths), len(paths), "labelled crops stored")
    return report
