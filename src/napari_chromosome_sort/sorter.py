"""Create-ML-style whole-image sorter: train on any folder-per-class image set, sort new images.

Training reuses the chromosome classifier machinery (same backbones, heads, metrics and model
file format); only the preprocessing differs: whole images are *not* given the chromosome
canonical appearance (``appearance="plain"``) and are stretched to the input size
(``geometry="stretch"``). The model metadata records ``task = "whole_image_sorter"``; the
preprocessing travels in the model file, so prediction applies exactly the same steps.

Sorting never moves or deletes an original: images are copied (or hard-linked / symlinked) into
``OUT/<class>/``; images whose highest probability is below ``min_confidence`` go to
``OUT/_review/`` instead and are listed in ``review.csv``; ``predictions.csv`` holds every
image's probabilities. Class names come from the model file and are checked before they become
folder names (:func:`.safety.check_name`): nothing is ever written outside ``OUT``. Two inputs
that flatten to one name (``x/a.jpg``, ``x__a.jpg``) get distinct names (``x__a-2.jpg``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from napari_chromosome_sort.classification.training import TrainingConfig, scan_folder
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.atomic import write_csv_atomic
from napari_chromosome_sort.files.io import IMAGE_SUFFIXES, read_image
from napari_chromosome_sort.files.safety import (
    check_name,
    check_relative,
    flat_names,
    inside,
    no_links,
    output_path,
    parent_inside,
    record_written,
    unique_in,
)
from napari_chromosome_sort.progress import Progress, relay, run_to_end

if TYPE_CHECKING:
    from napari_chromosome_sort.classification.models.classifier import ChromosomeClassifier

TASK = "whole_image_sorter"
REVIEW = "_review"
RESERVED = (REVIEW, "predictions.csv", "review.csv")
CORRECTIONS = "corrections.csv"
MAX_SIDE = 512  # images are downsampled to this longest side when loaded (input is 224)


def sorter_config(**overrides):
    """A ``training.TrainingConfig`` for whole images (plain appearance, stretched)."""
    base = dict(appearance="plain", geometry="stretch")
    base.update(overrides)
    return TrainingConfig(**base)


def load_rgb(path, max_side: int = MAX_SIDE) -> np.ndarray:
    """Image file -> uint8 RGB, longest side <= ``max_side`` (contrast-stretched if not 8-bit)."""
    from PIL import Image

    arr = np.asarray(read_image(path))
    if arr.dtype != np.uint8:
        a = arr.astype(np.float32)
        lo, hi = np.percentile(a, [0.5, 99.5])
        arr = np.clip((a - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    arr = np.ascontiguousarray(arr[..., :3])
    h, w = arr.shape[:2]
    if max(h, w) > max_side:
        f = max_side / max(h, w)
        arr = np.asarray(
            Image.fromarray(arr).resize(
                (max(1, round(w * f)), max(1, round(h * f))), Image.BILINEAR
            )
        )
    return arr


def list_images(folder, exclude: Path | None = None) -> list[Path]:
    """Image files below ``folder`` (recursive, sorted; hidden files and those under ``exclude``
    skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ChromosortError(f"image folder {folder} does not exist")
    out = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith("."):
            continue
        if exclude is not None and exclude in p.resolve().parents:
            continue
        out.append(p)
    return out


# ------------------------------------------------------------------ training


def train_sorter_images(
    images: Sequence, targets, classes: Sequence[str], config=None
) -> Generator[Progress, None, ChromosomeClassifier]:
    """Train a whole-image sorter on images (arrays or paths) + integer targets; returns the
    model."""
    # torch (through training): only when a sorter is trained
    from napari_chromosome_sort.classification.training import train_classifier

    config = config or sorter_config()
    images = [load_rgb(im) if isinstance(im, (str, os.PathLike)) else im for im in images]
    model = yield from train_classifier(images, targets, classes, config)
    model.metadata["task"] = TASK
    return model


def train_sorter(root, config=None) -> Generator[Progress, None, ChromosomeClassifier]:
    """Train on a folder-per-class set of whole images (ImageFolder convention); returns the
    model."""
    paths, targets, classes = scan_folder(root)
    images = []
    for i, p in enumerate(paths):
        images.append(load_rgb(p))
        if i % 20 == 0:
            yield Progress(i, len(paths), f"loading {p.name}")
    model = yield from train_sorter_images(images, targets, classes, config)
    model.metadata.setdefault("training", {})["dataset"] = str(Path(root).resolve())
    return model


# ------------------------------------------------------------------ prediction / sorting


def predict_images(
    model, paths: Sequence, tta: bool = True, batch_size: int = 16, progress: bool = False
):
    """Probabilities for image files -> DataFrame ``file, class, confidence, p_<class>...``.

    With ``progress=True`` returns a generator of Progress that returns the table.
    """
    gen = _predict_images(model, list(paths), tta, batch_size)
    if progress:
        return gen

    return run_to_end(gen)


def _predict_images(model, paths, tta, batch_size) -> Generator[Progress, None, pd.DataFrame]:
    classes = list(model.classes)
    probs = []
    for start in range(0, len(paths), batch_size):
        chunk = [load_rgb(p) for p in paths[start : start + batch_size]]
        probs.append(model.predict_proba(chunk, tta=tta))
        yield Progress(min(start + batch_size, len(paths)), len(paths), "classifying")
    p = np.concatenate(probs) if probs else np.zeros((0, len(classes)))
    table = pd.DataFrame({"file": [str(x) for x in paths]})
    table["class"] = [classes[i] for i in p.argmax(1)] if len(p) else []
    table["confidence"] = p.max(1) if len(p) else []
    for j, c in enumerate(classes):
        table[f"p_{c}"] = p[:, j] if len(p) else []
    return table


def _place(src: Path, dest: Path, link: bool | str) -> str:
    """Copy / hard-link / symlink ``src`` to ``dest`` atomically; never touches ``src``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    if tmp.exists() or tmp.is_symlink():
        tmp.unlink()
    how = "copy"
    try:
        if link in (True, "hard"):
            try:
                os.link(src, tmp)
                how = "hardlink"
            except OSError:
                os.symlink(src.resolve(), tmp)
                how = "symlink"
        elif link == "sym":
            os.symlink(src.resolve(), tmp)
            how = "symlink"
        else:
            shutil.copy2(src, tmp)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())  # on the disk before it gets the final name
        os.replace(tmp, dest)
    except BaseException:
        if os.path.lexists(tmp):
            tmp.unlink()  # no temporary file left behind (a full disk, Ctrl-C)
        raise
    return how


@dataclass
class SortResult:
    """What :func:`sort_folder` did: the output folder, one row per image, images per class and how
    many went to review."""

    out_dir: Path
    table: pd.DataFrame
    counts: dict = field(default_factory=dict)
    n_review: int = 0


def sort_folder(
    model,
    input_dir,
    out_dir,
    link: bool | str = False,
    min_confidence: float = 0.6,
    tta: bool = True,
    overwrite: bool = False,
) -> Generator[Progress, None, SortResult]:
    """Classify every image below ``input_dir`` and place a copy/link in ``out_dir/<class>/``
    (``out_dir/_review/`` when max p < ``min_confidence``). Originals are never moved or deleted;
    a file already in ``out_dir`` that chromosort did not write is never replaced (refused before
    anything is written) unless ``overwrite``. Returns a :class:`SortResult`."""
    input_dir, out_dir = Path(input_dir).resolve(), Path(out_dir).resolve()
    if out_dir == input_dir:
        raise ChromosortError("--out must differ from the input folder (originals stay in place)")
    if not 0 <= min_confidence <= 1:
        raise ChromosortError("min-confidence must be between 0 and 1")
    _check_output_classes(model.classes)
    paths = list_images(input_dir, exclude=out_dir)
    if not paths:
        raise ChromosortError(f"no images ({', '.join(IMAGE_SUFFIXES)}) below {input_dir}")
    table = yield from relay(
        predict_images(model, paths, tta=tta, progress=True),
        lambda report: Progress(report.step, 2 * len(paths), report.message),
    )
    table["review"] = table["confidence"] < min_confidence
    placed, how = [], []
    names = flat_names(p.relative_to(input_dir) for p in paths)
    folders = [REVIEW if row.review else str(row[1]) for row in table.itertuples(index=False)]
    dests = _check_destinations(out_dir, folders, names, overwrite)
    for i, (path, dest) in enumerate(zip(paths, dests, strict=True)):
        how.append(_place(path, dest, link))
        placed.append(str(dest))
        yield Progress(len(paths) + i + 1, 2 * len(paths), f"{dest.parent.name}/{dest.name}")
    table["placed_as"] = placed
    table["how"] = how
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(table, out_dir / "predictions.csv")
    write_csv_atomic(table[table["review"]], out_dir / "review.csv")
    record_written([*dests, out_dir / "predictions.csv", out_dir / "review.csv"])
    counts = table[~table["review"]]["class"].value_counts().to_dict()
    yield Progress(2 * len(paths), 2 * len(paths), "sorted")
    return SortResult(out_dir, table, counts, int(table["review"].sum()))


def _check_destinations(out_dir: Path, folders, names, overwrite: bool) -> list[Path]:
    """Every file sort will write, checked before any is written: inside ``out_dir``, no link on
    the way, and none replacing a file chromosort did not write (unless ``overwrite``)."""
    dests = []
    for folder in sorted(set(folders)):
        try:
            no_links(out_dir, out_dir / folder, "class folder").mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ChromosortError(
                f"cannot create class folder {out_dir / folder}: {error.strerror}"
            ) from None
    for folder, name in zip(folders, names, strict=True):
        dest = parent_inside(out_dir, out_dir / folder / name, "sorted image")
        dests.append(output_path(dest, out_dir, overwrite, "sorted image"))
    for name in ("predictions.csv", "review.csv"):
        output_path(out_dir / name, out_dir, overwrite, "table")
    return dests


def _check_output_classes(classes: Sequence[str]) -> None:
    """Class names become folders of ``OUT``: each must be a safe name and not one of ours."""
    for cls in classes:
        check_name(cls)
        if cls.lower() in RESERVED:
            raise ChromosortError(f"class name {cls!r} is reserved for sort's own output")


# ------------------------------------------------------------------ corrections


def add_to_training_set(image_path, dataset_root, cls: str) -> Path:
    """Write a (corrected) image into ``dataset_root/<cls>/`` atomically and log it in
    ``dataset_root/corrections.csv``. A copy this function made earlier for the same source under
    another class is re-labelled (renamed inside the dataset); originals are never touched."""
    src = Path(image_path).resolve()
    root = Path(dataset_root)
    check_name(cls)
    if cls.startswith("_"):
        raise ChromosortError(f"invalid class name {cls!r} (names starting with '_' are ours)")
    if not src.is_file():
        raise ChromosortError(f"image {src} does not exist")
    root.mkdir(parents=True, exist_ok=True)
    log_path = root / CORRECTIONS
    log = read_corrections(log_path)
    previous = log[log["source"] == str(src)]
    dest_dir = no_links(root, root / cls, "class folder")
    dest_dir.mkdir(parents=True, exist_ok=True)
    if len(previous):
        old = inside(root, previous.iloc[-1]["file"], f"file entry of {log_path}")
        dest = dest_dir / old.name
        if old.is_file() and old.resolve() != dest.resolve():
            dest = unique_in(dest_dir, old.name)  # never onto another image of the class
            os.replace(old, dest)  # our own earlier copy: re-label it
        elif not old.is_file():
            _place(src, dest, False)
        log = log[log["source"] != str(src)]
    else:
        dest = unique_in(dest_dir, src.name)
        _place(src, dest, False)
    log = pd.concat(
        [log, pd.DataFrame([{"source": str(src), "file": f"{cls}/{dest.name}", "class": cls}])],
        ignore_index=True,
    )
    write_csv_atomic(log, log_path)
    return dest


def read_corrections(log_path: Path) -> pd.DataFrame:
    """``corrections.csv`` (empty when absent); refused when unreadable, lacking a column, or
    naming a file other than ``<class>/<image>`` inside the dataset folder."""
    columns = ["source", "file", "class"]
    if not log_path.is_file():
        return pd.DataFrame(columns=columns)
    try:
        log = pd.read_csv(log_path, dtype=str, keep_default_na=False)
    except Exception as error:  # noqa: BLE001 - any parse failure is a bad file
        raise ChromosortError(f"cannot read {log_path}: {type(error).__name__}") from None
    missing = [c for c in columns if c not in log.columns]
    if missing:
        raise ChromosortError(f"{log_path} lacks columns {', '.join(missing)}")
    for line, file in enumerate(log["file"], start=2):
        try:
            if len(check_relative(file, "file").parts) != 2:
                raise ChromosortError(f"file {file!r:.60} is not <class>/<image>")
        except ChromosortError as error:
            raise ChromosortError(f"{log_path} line {line} is refused: {error}") from None
    return log[columns]
