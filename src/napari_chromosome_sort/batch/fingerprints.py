"""Whether a spread is done: its DONE marker, its result files, and the fingerprint of what it
was computed with (model file, settings, package version)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from napari_chromosome_sort import __version__
from napari_chromosome_sort.classification.predict import PriorOptions

if TYPE_CHECKING:
    from napari_chromosome_sort.batch.jobs import SpreadJob

DONE = "DONE"
RESULT_FILES = ("objects.csv", "labels.npy")  # a finished spread has each of these


def file_digest(path) -> str:
    """sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(
    model_path,
    params: dict | None,
    gradcam: bool,
    priors: PriorOptions | None = None,
    views: int | None = None,
    model_sha256: str | None = None,
) -> str:
    """What a finished spread was computed with: model file (size, mtime, bytes), segmentation
    parameters, Grad-CAM flag, package version, prior-estimate options and views averaged. A
    spread whose DONE marker holds another fingerprint is recomputed (the model or the
    settings changed since)."""
    st = os.stat(model_path)
    key = json.dumps(
        [str(model_path), st.st_size, st.st_mtime_ns, params or {}, bool(gradcam), __version__]
        + [(priors or PriorOptions()).key(), {"views": views}]
        + ([model_sha256] if model_sha256 else []),
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def is_done(job: SpreadJob, fingerprint: str | None = None) -> bool:
    """True when the spread's DONE marker exists (and matches ``fingerprint`` if given)."""
    marker = Path(job.out_dir) / DONE
    if not marker.is_file():
        return False
    if not all((Path(job.out_dir) / name).is_file() for name in RESULT_FILES):
        return False  # damaged (e.g. by a file manager or another program): compute it again
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(info, dict) or (job.digest and info.get("image_sha256") != job.digest):
        return False  # the image was replaced under the same name
    if not table_holds(Path(job.out_dir) / "objects.csv", info.get("n_objects")):
        return False  # emptied or cut short since
    return fingerprint is None or info.get("fingerprint") == fingerprint


def table_holds(path: Path, rows) -> bool:
    """True when the CSV at ``path`` reads back with a header and ``rows`` rows."""
    try:
        table = pd.read_csv(path, usecols=[0])
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return False
    return rows is None or len(table) == rows
