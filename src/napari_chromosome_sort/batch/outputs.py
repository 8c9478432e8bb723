"""The output folder of a batch run: claimed before any work (``spreads/`` is the tool's, no
report replaces a file chromosort did not write), leftovers of interrupted runs removed, and
the one copy of the model that every task of a run loads."""

from __future__ import annotations

import contextlib
import hashlib
import re
from pathlib import Path

from napari_chromosome_sort.batch.fingerprints import DONE, RESULT_FILES, file_digest
from napari_chromosome_sort.batch.jobs import SpreadJob
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.atomic import write_bytes_atomic
from napari_chromosome_sort.files.safety import (
    claim_folder,
    is_link,
    mark_owned,
    no_links,
    output_path,
    owns,
    remove_owned,
)

PICTURES = ("calls.png", "labels.tif")  # for a person: outlines in class colours; Fiji/napari
SPREAD_FILES = (*RESULT_FILES, "gradcam.npy", *PICTURES, DONE)  # all a spread folder may hold
SPREAD_NAMES = (  # + temp files
    r"\.?(objects\.csv|labels\.npy|gradcam\.npy|calls\.png|labels\.tif|DONE)(\..*\.tmp.*)?"
)
REPORT_FILES = ("objects.csv", "summary.csv", "comparisons.csv", "stats.txt", "failures.csv")
OWN_NAMES = r"(\.[^/]*\.tmp-[0-9a-f]+|\.model-[0-9a-f]{16}\.safetensors)"  # our hidden files


def claim_outputs(out_dir: Path, legacy: bool, overwrite: bool, formats) -> None:
    """Before any work: ``out_dir/spreads`` is the tool's (made by it, or by an earlier version
    beside its lock), no sample folder in it is a link, and no report would replace a file
    chromosort did not write (unless ``overwrite``)."""
    spreads = out_dir / "spreads"
    if is_link(spreads):
        raise ChromosortError(f"{spreads} is a link; the tool never writes through a link")
    if legacy and spreads.is_dir() and not owns(spreads):
        mark_owned(spreads)
    if not claim_folder(spreads, out_dir, "batch results folder"):
        raise ChromosortError(
            f"{spreads} exists and was not made by chromosort batch; choose another --out"
        )
    for sample in spreads.iterdir():
        if is_link(sample):
            raise ChromosortError(
                f"{sample} is a link; the tool never writes or deletes through a link"
            )
    ours = legacy  # reports of an earlier version (no record of their bytes)
    names = [*REPORT_FILES, *(f"stacked_bar.{fmt}" for fmt in formats)]
    for name in names:
        path = out_dir / name
        if ours and path.is_file() and not is_link(path) and not overwrite:
            continue  # our own report of an earlier run
        output_path(path, out_dir, overwrite, "report")


def prepare_spreads(spreads: Path, jobs: list[SpreadJob], model_path) -> tuple[Path, str]:
    """Before a run: leftovers of interrupted runs removed, every spread folder checked (no
    link on the way), each image's bytes hashed, and the model read once into a copy that all
    tasks load; returns the copy and the model's SHA-256."""
    _remove_leftovers(spreads)
    for job in jobs:
        no_links(spreads, job.out_dir, "spread folder")
        job.digest = file_digest(job.image)
    model_bytes = Path(model_path).read_bytes()  # the one model of this run
    model_sha = hashlib.sha256(model_bytes).hexdigest()
    snapshot = spreads / f".model-{model_sha[:16]}.safetensors"
    write_bytes_atomic(snapshot, model_bytes)
    return snapshot, model_sha


def _remove_leftovers(spreads: Path) -> None:
    """Temporary folders and model copies of interrupted runs (no other run is writing: we hold
    the lock); only names of ours, only inside the tool's own folder, never through a link."""
    for leftover in [*spreads.glob("*/.*.tmp-*"), *spreads.glob(".model-*.safetensors")]:
        if re.fullmatch(OWN_NAMES, leftover.name) and not is_link(leftover.parent):
            with contextlib.suppress(ChromosortError, OSError):
                remove_owned(leftover, spreads, f"{SPREAD_NAMES}|{re.escape(leftover.name)}")
