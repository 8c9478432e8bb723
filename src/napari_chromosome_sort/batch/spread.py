"""One spread of a batch run, as a worker's task: segment, classify (and Grad-CAM), then write
its folder atomically (computed in a temporary sibling, renamed into place when complete).

Every task receives the *path* of the model file and loads it itself (cached per worker
process); torch modules are never pickled."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from napari_chromosome_sort.batch.fingerprints import DONE, file_digest, is_done, table_holds
from napari_chromosome_sort.batch.jobs import SpreadJob
from napari_chromosome_sort.batch.outputs import SPREAD_NAMES
from napari_chromosome_sort.classification import predict
from napari_chromosome_sort.display.overlays import calls_overlay
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files import io
from napari_chromosome_sort.files.atomic import atomic_path, write_bytes_atomic, write_csv_atomic
from napari_chromosome_sort.files.safety import is_link, remove_owned
from napari_chromosome_sort.segmentation import SegmentationParams


@dataclass
class SpreadSettings:
    """What every spread of a run is computed with (picklable: sent to each worker).

    ``params``: segmentation parameters as a dict (None: the defaults); ``priors``:
    :class:`.predict.PriorOptions`; ``views``: dihedral views averaged (None: the model's own
    number); ``model_sha256``: the bytes the model file must hold; ``fingerprint``: what a
    finished spread must record to be skipped (:func:`.fingerprints.fingerprint`)."""

    model_path: str
    params: dict | None = None
    gradcam: bool = True
    torch_threads: int = 1
    fingerprint: str | None = None
    priors: predict.PriorOptions = field(default_factory=predict.PriorOptions)
    views: int | None = None
    model_sha256: str | None = None


_MODEL_CACHE: dict = {}


def _load_model_cached(model_path: str, sha256: str | None = None):
    """The model of ``model_path``, loaded once per worker process (and file version)."""
    # torch (through model_io): only in the worker that computes a spread
    from napari_chromosome_sort.classification.models import model_io

    key = (model_path, os.stat(model_path).st_mtime_ns, sha256)
    model = _MODEL_CACHE.get(key)
    if model is None:
        _MODEL_CACHE.clear()
        if sha256 and file_digest(model_path) != sha256:
            raise ChromosortError(f"model file {model_path} changed during the run")
        model = model_io.load_model(model_path)
        model.eval()
        _MODEL_CACHE[key] = model
    return model


def process_spread(job: SpreadJob, settings: SpreadSettings) -> dict:
    """Segment, classify (and Grad-CAM) one spread; write its results atomically. Returns a small
    summary dict (picklable). Runs in a worker: loads the model from ``settings.model_path``."""
    if is_done(job, settings.fingerprint):
        return {"image": job.image, "status": "skipped"}
    model = _load_model_cached(settings.model_path, settings.model_sha256)
    started = _usage()
    image = io.read_image(job.image)
    pred = _predict(model, image, settings)
    objects = _objects_table(job, pred)
    info = {
        "image": job.image,
        "sample": job.sample,
        "spread": job.stem,
        "model": str(settings.model_path),
        "model_sha256": settings.model_sha256,
        "image_sha256": job.digest or None,
        "n_objects": int(len(objects)),
        "n_classified": int(objects["class"].notna().sum()) if "class" in objects else 0,
        "shape": list(np.shape(image)),
        "fingerprint": settings.fingerprint,
        "cost": _cost_since(started),
        "warnings": [str(w) for w in pred.warnings],  # unlike the model's training images
    }
    if not _write_spread(job, settings, image, pred, objects, model.classes, info):
        return {"image": job.image, "status": "skipped"}
    return {"image": job.image, "status": "done", **info}


def _predict(model, image, settings: SpreadSettings):
    """:func:`.predict.predict_spread` with ``settings``, on at most ``torch_threads`` torch
    threads."""
    import torch  # heavy: only in the worker that computes a spread

    previous_threads = torch.get_num_threads()
    try:
        if settings.torch_threads:
            torch.set_num_threads(int(settings.torch_threads))
        return predict.predict_spread(
            model,
            image,
            params=SegmentationParams(**settings.params) if settings.params else None,
            gradcam=settings.gradcam,
            priors=settings.priors,
            views=settings.views,
        )
    finally:  # in-process ("serial") runs must not change the caller's torch settings
        torch.set_num_threads(previous_threads)


def _objects_table(job: SpreadJob, pred) -> pd.DataFrame:
    """Every segmented object of the spread, with its call and class probabilities if kept."""
    objects = pred.segmentation.objects.copy()
    table = pred.table.copy()
    extra = [c for c in table.columns if c not in objects.columns or c == "label"]
    objects = objects.merge(table[extra], on="label", how="left") if len(objects) else objects
    for col in extra:
        if col not in objects.columns:
            objects[col] = pd.Series(dtype=float)
    objects.insert(0, "spread", job.stem)
    objects.insert(0, "sample", job.sample)
    objects["image"] = job.image
    return objects


def _write_spread(job, settings, image, pred, objects, classes, info: dict) -> bool:
    """The spread's folder written in a temporary sibling and renamed into place; False when a
    racing duplicate finished it first (then nothing is changed)."""
    final = Path(job.out_dir)
    if is_link(final.parent):
        raise ChromosortError(f"{final.parent} is a link; the tool never writes through a link")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write_csv_atomic(objects, tmp / "objects.csv")
        with atomic_path(tmp / "labels.npy") as part:
            np.save(part, np.asarray(pred.segmentation.labels, dtype=np.int32))
        if settings.gradcam and pred.gradcam_map is not None:
            with atomic_path(tmp / "gradcam.npy") as part:
                np.save(part, np.asarray(pred.gradcam_map, dtype=np.float32))
        _write_pictures(tmp, image, pred.segmentation.labels, pred.table, classes)
        if not table_holds(tmp / "objects.csv", len(objects)):
            raise ChromosortError(f"the objects table of {job.image} did not read back")
        write_bytes_atomic(tmp / DONE, json.dumps(info).encode())
        if os.path.lexists(final):  # unfinished leftover, stale result, or a racing duplicate
            if is_done(job, settings.fingerprint):
                shutil.rmtree(tmp)
                return False
            remove_owned(final, final.parent.parent, SPREAD_NAMES, "spread folder")
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return True


def _write_pictures(folder: Path, image, labels, calls: pd.DataFrame, classes) -> None:
    """``calls.png`` (the spread, each chromosome outlined in its class colour) and
    ``labels.tif`` (the objects' label image), for a person to open."""
    import tifffile
    from PIL import Image

    picture = calls_overlay(image, labels, calls, [str(c) for c in classes])
    with atomic_path(folder / "calls.png") as part:
        Image.fromarray(picture).save(part, format="PNG")
    with atomic_path(folder / "labels.tif") as part:
        tifffile.imwrite(part, np.asarray(labels, dtype=np.int32), compression="zlib")


def _usage() -> tuple[float, float, float]:
    """(wall, user CPU, kernel CPU) seconds of this process so far (CPU: 0 where unknown)."""
    try:
        import resource
    except ImportError:  # Windows
        return time.perf_counter(), time.process_time(), 0.0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), usage.ru_utime, usage.ru_stime


def _cost_since(started: tuple[float, float, float]) -> dict:
    """Seconds of wall time, user CPU and kernel CPU this process spent since ``started``."""
    now = _usage()
    return {
        name: round(b - a, 3)
        for name, a, b in zip(("wall_s", "user_s", "kernel_s"), started, now, strict=True)
    }
