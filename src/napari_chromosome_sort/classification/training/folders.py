"""A folder-per-class set of crops as training data, and the quick check before any network
runs (which classes are empty, how many cross-validation folds the smallest class allows)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_chromosome_sort.files.dataset import scan_image_folder


def scan_folder(root) -> tuple[list[Path], np.ndarray, list[str]]:
    """Folder-per-class image set -> (paths, targets, classes) (see dataset.scan_image_folder).

    A class folder without images is no class (a class nobody labelled yet)."""
    paths, targets, classes = scan_image_folder(root, skip_empty=True)
    return [Path(p) for p in paths], np.asarray(targets, int), list(classes)


def empty_classes(root, classes: Sequence[str]) -> list[str]:
    """Class folders of ``root`` that ``scan_folder`` left out because they hold no images."""
    folders = (p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))
    return sorted(set(folders) - set(classes))


def check_folder(root, cv_folds: int = 0) -> tuple[int, list[str]]:
    """The quick check before any network runs: ``(folds, notes)``.

    ``folds``: the cross-validation folds the smallest class allows (at most ``cv_folds``; 0 =
    no evaluation); ``notes``: plain sentences for the user about what was changed or left out.
    Raises ChromosortError when the folder cannot be trained on at all.
    """
    _, targets, classes = scan_folder(root)
    notes = []
    left_out = empty_classes(root, classes)
    if left_out:
        notes.append(f"No crops yet in class {', '.join(left_out)}: trained without it.")
    counts = np.bincount(targets, minlength=len(classes))
    smallest, name = int(counts.min()), classes[int(counts.argmin())]
    folds = int(cv_folds) if cv_folds >= 2 else 0
    if folds > smallest:
        folds = smallest if smallest >= 2 else 0
        how = (
            f"evaluated by {folds}-fold cross-validation instead of {cv_folds}-fold"
            if folds
            else "the model is saved without the cross-validated concordance"
        )
        notes.append(
            f"Class {name} has only {smallest} crop{'s' * (smallest != 1)}: {how}. "
            "Label more chromosomes of it for a reliable estimate."
        )
    return folds, notes
