"""Batch runs: segment -> classify -> Grad-CAM on every spread below a folder, locally or on a
Dask distributed cluster, resumable.

Layout of ``OUT_DIR``::

    spreads/<sample>/<stem>/objects.csv    every segmented object (+ class, p_<class> if kept)
    spreads/<sample>/<stem>/labels.npy     int32 label image
    spreads/<sample>/<stem>/gradcam.npy    float32 image-shaped Grad-CAM (if asked for)
    spreads/<sample>/<stem>/DONE           JSON done-marker (written last, inside the atomic dir)
    objects.csv                            all spreads' objects (sample, spread, image columns)
    summary.csv, comparisons.csv, stats.txt, stacked_bar.{png,svg}

Each spread is computed into a temporary sibling directory which is renamed into place only when
complete, so an interrupted run leaves either a finished spread or nothing; re-running skips
spreads whose ``DONE`` marker exists, whose results are all there, and which record the same
model file and settings (a changed model file or segmentation parameters recompute the spread).

One run at a time writes to an output folder: a run holds a lock on ``OUT_DIR/.chromosort-batch
.lock`` (released by the operating system even when the run is killed), and a second run on the
same folder stops with a message instead of deleting the first one's unfinished spreads.

Every task receives the *path* of the model file and loads it itself (cached per worker process);
torch modules are never pickled. Torch threads per task are limited (``torch_threads``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Generator
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from napari_chromosome_sort.analysis.confusion import load_confusion
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.atomic import atomic_path, write_bytes_atomic, write_csv_atomic
from napari_chromosome_sort.files.io import IMAGE_SUFFIXES
from napari_chromosome_sort.files.safety import (
    claim_folder,
    is_link,
    mark_owned,
    no_links,
    output_path,
    owns,
    record_written,
    remove_owned,
    unique_ids,
)
from napari_chromosome_sort.progress import Progress

if TYPE_CHECKING:
    from napari_chromosome_sort.classification.predict import PriorOptions

DONE = "DONE"
RESULT_FILES = ("objects.csv", "labels.npy")  # a finished spread has each of these
LOCK = ".chromosort-batch.lock"
PICTURES = ("calls.png", "labels.tif")  # for a person: outlines in class colours; Fiji/napari
SPREAD_FILES = (*RESULT_FILES, "gradcam.npy", *PICTURES, DONE)  # all a spread folder may hold
SPREAD_NAMES = (  # + temp files
    r"\.?(objects\.csv|labels\.npy|gradcam\.npy|calls\.png|labels\.tif|DONE)(\..*\.tmp.*)?"
)
REPORT_FILES = ("objects.csv", "summary.csv", "comparisons.csv", "stats.txt", "failures.csv")
OWN_NAMES = r"(\.[^/]*\.tmp-[0-9a-f]+|\.model-[0-9a-f]{16}\.safetensors)"  # our hidden files

# Dask's log level in a batch run: errors only, unless CHROMOSORT_DASK_LOGS names a level (INFO).
DASK_LOG_LEVEL = getattr(logging, os.environ.get("CHROMOSORT_DASK_LOGS", "ERROR").upper(), 40)


@dataclass
class SpreadJob:
    """One spread to process: its sample, image file, unique stem and output folder."""

    sample: str
    image: str  # absolute path
    stem: str
    out_dir: str  # OUT_DIR/spreads/<sample>/<stem>
    digest: str = ""  # sha256 of the image's bytes when the run started ("" = not checked)


@dataclass
class BatchResult:
    """What ``run_batch`` produced: the objects table, summary and comparisons, counts of
    spreads found, skipped (already done) and failed (with their errors), and the files written."""

    out_dir: Path
    objects: pd.DataFrame
    summary: pd.DataFrame
    comparisons: list = field(default_factory=list)
    n_spreads: int = 0
    n_skipped: int = 0
    n_failed: int = 0
    failures: dict = field(default_factory=dict)
    files: list = field(default_factory=list)
    renamed: dict = field(default_factory=dict)  # input image -> "sample/spread" it was given


# ------------------------------------------------------------------ discovery


def find_spreads(
    input_dir, out_dir, exclude: tuple[str, ...] = (), extensions=IMAGE_SUFFIXES
) -> list[SpreadJob]:
    """Every image below ``input_dir``. Sample = first-level sub-folder (files directly in
    ``input_dir`` form a sample named after it). ``exclude``: glob patterns on file names
    (e.g. ``"*K.tif"`` for karyotype truth images)."""
    from fnmatch import fnmatch

    root = Path(input_dir).resolve()
    if not root.is_dir():
        raise ChromosortError(f"input folder {root} does not exist or is not a folder")
    spreads_root = Path(out_dir).resolve() / "spreads"
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in extensions:
            continue
        if path.name.startswith(".") or any(fnmatch(path.name, pat) for pat in exclude):
            continue
        try:
            path.relative_to(Path(out_dir).resolve())
            continue  # never pick up our own outputs
        except ValueError:
            pass
        rel = path.relative_to(root)
        sample = rel.parts[0] if len(rel.parts) > 1 else root.name
        # stem unique within the sample: nested sub-folders are joined with "__"
        inner = rel.parts[1:] if len(rel.parts) > 1 else rel.parts
        stem = "__".join([*inner[:-1], Path(inner[-1]).stem])
        found.append((sample, path, stem))
    jobs = _unique_jobs(found, spreads_root)
    if not jobs:
        raise ChromosortError(
            f"no images ({', '.join(extensions)}) below {root}; put spreads in one sub-folder "
            "per sample"
        )
    return jobs


def _unique_jobs(found: list, spreads_root: Path) -> list[SpreadJob]:
    """One job per image with a distinct, safe sample and spread id (:func:`.safety.unique_ids`):
    ``x.png`` and ``x.jpg``, or ``sub/y.png`` and ``sub__y.png``, become ``x-2``/``x-3``; which
    image each id stands for is in its DONE marker and in every row (``image``)."""
    samples, _ = unique_ids(sorted({sample for sample, _, _ in found}))
    sample_id = dict(zip(sorted({sample for sample, _, _ in found}), samples, strict=True))
    jobs = []
    for sample in sorted(sample_id):
        members = [(path, stem) for s, path, stem in found if s == sample]
        stems, _ = unique_ids([stem for _, stem in members])
        for (path, _), stem in zip(members, stems, strict=True):
            sid = sample_id[sample]
            jobs.append(SpreadJob(sid, str(path), stem, str(spreads_root / sid / stem)))
    return jobs


def renamed_spreads(jobs: list[SpreadJob], input_dir) -> dict[str, str]:
    """{image: "sample/spread"} for the images whose ids are not their own names (collisions or
    unsafe characters), to be reported."""
    root = Path(input_dir).resolve()
    out = {}
    for job in jobs:
        rel = Path(job.image).relative_to(root)
        inner = rel.parts[1:] if len(rel.parts) > 1 else rel.parts
        sample = rel.parts[0] if len(rel.parts) > 1 else root.name
        natural = "__".join([*inner[:-1], Path(inner[-1]).stem])
        if (job.sample, job.stem) != (sample, natural):
            out[job.image] = f"{job.sample}/{job.stem}"
    return out


def file_digest(path) -> str:
    """sha256 of a file's bytes (hex)."""
    import hashlib

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
    import hashlib

    from napari_chromosome_sort import __version__
    from napari_chromosome_sort.classification.predict import PriorOptions

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
    if not _table_holds(Path(job.out_dir) / "objects.csv", info.get("n_objects")):
        return False  # emptied or cut short since
    return fingerprint is None or info.get("fingerprint") == fingerprint


def _table_holds(path: Path, rows) -> bool:
    """True when the CSV at ``path`` reads back with a header and ``rows`` rows."""
    try:
        table = pd.read_csv(path, usecols=[0])
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return False
    return rows is None or len(table) == rows


# ------------------------------------------------------------------ the task

_MODEL_CACHE: dict = {}


def _load_model_cached(model_path: str, sha256: str | None = None):
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


def _params_from_dict(params: dict | None):
    if not params:
        return None
    from napari_chromosome_sort.segmentation import SegmentationParams

    return SegmentationParams(**params)


def process_spread(
    job: SpreadJob,
    model_path: str,
    params: dict | None = None,
    gradcam: bool = True,
    torch_threads: int = 1,
    fingerprint: str | None = None,
    priors: PriorOptions | None = None,
    views: int | None = None,
    model_sha256: str | None = None,
) -> dict:
    """Segment, classify (and Grad-CAM) one spread; write its results atomically. Returns a small
    summary dict (picklable). Runs in a worker: loads the model from ``model_path``. ``priors``:
    :class:`.predict.PriorOptions` (default: the defaults); ``views``: dihedral views averaged
    (None: the model's own number); ``model_sha256``: the bytes the model file must hold."""
    import numpy as np
    import torch

    from napari_chromosome_sort.classification import predict
    from napari_chromosome_sort.files import io

    priors = priors or predict.PriorOptions()
    previous_threads = torch.get_num_threads()
    final = Path(job.out_dir)
    if is_done(job, fingerprint):
        return {"image": job.image, "status": "skipped"}
    model = _load_model_cached(model_path, model_sha256)
    started = _usage()
    image = io.read_image(job.image)
    try:
        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        pred = predict.predict_spread(
            model,
            image,
            params=_params_from_dict(params),
            gradcam=gradcam,
            priors=priors,
            views=views,
        )
    finally:  # in-process ("serial") runs must not change the caller's torch settings
        torch.set_num_threads(previous_threads)
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

    if is_link(final.parent):
        raise ChromosortError(f"{final.parent} is a link; the tool never writes through a link")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write_csv_atomic(objects, tmp / "objects.csv")
        with atomic_path(tmp / "labels.npy") as part:
            np.save(part, np.asarray(pred.segmentation.labels, dtype=np.int32))
        if gradcam and pred.gradcam_map is not None:
            with atomic_path(tmp / "gradcam.npy") as part:
                np.save(part, np.asarray(pred.gradcam_map, dtype=np.float32))
        _write_pictures(tmp, image, pred.segmentation.labels, table, model.classes)
        info = {
            "image": job.image,
            "sample": job.sample,
            "spread": job.stem,
            "model": str(model_path),
            "model_sha256": model_sha256,
            "image_sha256": job.digest or None,
            "n_objects": int(len(objects)),
            "n_classified": int(objects["class"].notna().sum()) if "class" in objects else 0,
            "shape": list(np.shape(image)),
            "fingerprint": fingerprint,
            "cost": _cost_since(started),
        }
        if not _table_holds(tmp / "objects.csv", len(objects)):
            raise ChromosortError(f"the objects table of {job.image} did not read back")
        write_bytes_atomic(tmp / DONE, json.dumps(info).encode())
        if os.path.lexists(final):  # unfinished leftover, stale result, or a racing duplicate
            if is_done(job, fingerprint):
                shutil.rmtree(tmp)
                return {"image": job.image, "status": "skipped"}
            remove_owned(final, final.parent.parent, SPREAD_NAMES, "spread folder")
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"image": job.image, "status": "done", **info}


def _write_pictures(folder: Path, image, labels, calls: pd.DataFrame, classes) -> None:
    """``calls.png`` (the spread, each chromosome outlined in its class colour) and
    ``labels.tif`` (the objects' label image), for a person to open."""
    import numpy as np
    import tifffile
    from PIL import Image

    from napari_chromosome_sort.display.overlays import calls_overlay

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


# ------------------------------------------------------------------ merging


def collect_objects(out_dir, jobs: list[SpreadJob] | None = None) -> pd.DataFrame:
    """Concatenate every finished spread's ``objects.csv`` (sorted by sample, spread); with
    ``jobs``, only those spreads (a removed input's old result is not counted)."""
    spreads = Path(out_dir) / "spreads"
    frames = []
    dones = sorted(spreads.glob(f"*/*/{DONE}"))
    if jobs is not None:
        dones = [Path(j.out_dir) / DONE for j in sorted(jobs, key=lambda j: j.out_dir)]
        dones = [d for d in dones if d.is_file()]
    for done in dones:
        path = done.parent / "objects.csv"
        try:
            frames.append(pd.read_csv(path, keep_default_na=True))
        except (pd.errors.EmptyDataError, FileNotFoundError):
            continue  # empty, or damaged and not recomputed (then listed in failures.csv)
    if not frames:
        return pd.DataFrame(columns=["sample", "spread", "label", "class"])
    table = pd.concat(frames, ignore_index=True)
    table["sample"] = table["sample"].astype(str)
    table["spread"] = table["spread"].astype(str)
    return table.sort_values(["sample", "spread", "label"], kind="stable").reset_index(drop=True)


def write_reports(
    out_dir, objects: pd.DataFrame, classes=None, formats=("png", "svg"), confusion=None
):
    """summary.csv, comparisons.csv, stats.txt and the stacked-bar plot from ``objects``;
    ``confusion`` (the model's cross-validated confusion, if it stores one) widens each share's
    interval by the classifier's own error."""
    from napari_chromosome_sort.analysis import plots, readout

    out_dir = Path(out_dir)
    files = []
    write_csv_atomic(objects, out_dir / "objects.csv")
    files.append(out_dir / "objects.csv")
    classified = objects[objects["class"].notna()] if "class" in objects else objects.iloc[:0]
    if classified.empty:
        return pd.DataFrame(), [], files
    if classes is None:
        classes = [c[2:] for c in objects.columns if c.startswith("p_")] or None
    summary = readout.summarize(classified, classes=classes, confusion=confusion)
    write_csv_atomic(summary, out_dir / "summary.csv")
    files.append(out_dir / "summary.csv")
    comparisons = readout.compare_all(classified, classes=classes, confusion=confusion)
    lines = readout.comparison_lines(classified, comparisons, classes=classes)
    if comparisons:
        write_csv_atomic(
            pd.DataFrame([c.as_dict() for c in comparisons]), out_dir / "comparisons.csv"
        )
        files.append(out_dir / "comparisons.csv")
    write_bytes_atomic(out_dir / "stats.txt", ("\n".join(lines) + "\n").encode())
    files.append(out_dir / "stats.txt")
    spreads = readout.spread_summary(classified, classes=classes, confusion=confusion)
    fig = plots.stacked_bar(summary, comparisons=comparisons, spreads=spreads)
    files += plots.save_figure(fig, out_dir / "stacked_bar", formats)
    return summary, comparisons, files


# ------------------------------------------------------------------ one run per output


def _try_lock(handle) -> bool:
    """An exclusive, non-blocking lock on an open file; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _holder(handle) -> str:
    try:
        handle.seek(0)
        return handle.read(200).strip()
    except OSError:
        return ""


@contextlib.contextmanager
def output_lock(out_dir: Path):
    """Hold ``out_dir``'s batch lock for the block; ChromosortError when another run has it.
    The lock dies with its process, so a killed run never blocks the next one."""
    path = Path(out_dir) / LOCK
    try:  # never through a link: the lock file is truncated below
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        handle = os.fdopen(os.open(path, flags, 0o666), "a+", encoding="utf-8", errors="replace")
    except OSError as error:
        raise ChromosortError(f"cannot lock output folder {out_dir}: {error}") from None
    with handle:
        if not _try_lock(handle):
            holder = _holder(handle) or "another process"
            raise ChromosortError(
                f"another chromosort batch ({holder}) is writing to {out_dir}; wait for it to "
                "finish or choose another output folder"
            )
        text = _holder(handle)
        if text and not text.startswith("pid "):
            raise ChromosortError(f"{path} is not chromosort's lock file; left alone")
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}")
        handle.flush()
        yield path  # closing the file releases the lock


# ------------------------------------------------------------------ the run


def _prepare_spreads(spreads: Path, jobs: list[SpreadJob], model_path) -> tuple[Path, str]:
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
    import re

    for leftover in [*spreads.glob("*/.*.tmp-*"), *spreads.glob(".model-*.safetensors")]:
        if re.fullmatch(OWN_NAMES, leftover.name) and not is_link(leftover.parent):
            with contextlib.suppress(ChromosortError, OSError):
                remove_owned(leftover, spreads, f"{SPREAD_NAMES}|{re.escape(leftover.name)}")


def _params_to_dict(params) -> dict | None:
    if params is None:
        return None
    if is_dataclass(params):
        return asdict(params)
    return dict(params)


def run_batch(
    input_dir,
    model_path,
    out_dir,
    scheduler: str | None = None,
    workers: int | None = None,
    params=None,
    gradcam: bool = True,
    torch_threads: int = 1,
    exclude: tuple[str, ...] = (),
    formats=("png", "svg"),
    priors: PriorOptions | None = None,
    views: int | None = None,
    overwrite: bool = False,
) -> Generator[Progress, None, BatchResult]:
    """Generator of :class:`Progress` that returns a :class:`BatchResult`.

    ``scheduler``: ``None`` -> a local ``distributed.LocalCluster`` with ``workers`` processes
    (default: all cores) of one thread each, or in this process when Dask is not installed (the
    ``batch`` extra); an address (``tcp://host:port``) -> that existing Dask scheduler;
    ``"serial"`` -> in this process, one spread after another (no Dask).
    Failures of single spreads are reported in ``result.failures`` and the run goes on; the
    failed spreads are retried by the next run. ``params``: segmentation parameters
    (:class:`.SegmentationParams` or dict); ``priors``: :class:`.predict.PriorOptions`;
    ``views``: dihedral views averaged per crop (None: the model's own number);
    ``overwrite``: replace report files in ``out_dir`` that chromosort did not write.
    """
    model_path = str(Path(model_path).resolve())
    if not Path(model_path).is_file():
        raise ChromosortError(f"model file {model_path} does not exist")
    if scheduler != "serial" and not dask_available():
        if scheduler:
            raise ChromosortError(
                "a Dask scheduler needs Dask: pip install 'napari-chromosome-sort[batch]'"
            )
        scheduler = "serial"
    out_dir = Path(out_dir).resolve()
    spreads = out_dir / "spreads"  # made by an earlier version: its lock beside, no marker
    legacy = (out_dir / LOCK).is_file() and not is_link(out_dir / LOCK) and not owns(spreads)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ChromosortError(f"cannot create output folder {out_dir}: {error}") from None
    with output_lock(out_dir):
        _claim_outputs(out_dir, legacy, overwrite, formats)
        return (
            yield from _run_locked(
                input_dir,
                model_path,
                out_dir,
                scheduler,
                workers,
                params,
                gradcam,
                torch_threads,
                exclude,
                formats,
                priors,
                views,
            )
        )


def _claim_outputs(out_dir: Path, legacy: bool, overwrite: bool, formats) -> None:
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


def dask_available() -> bool:
    """Whether Dask's distributed scheduler (the ``batch`` extra) is installed."""
    import importlib.util

    try:
        return importlib.util.find_spec("distributed") is not None
    except ValueError:  # a module set to None in sys.modules
        return False


_SPAWN_ENVIRON = "distributed.nanny.pre-spawn-environ"


def _worker_environ() -> dict:
    """The environment of new worker processes: Dask's, but allocating as one process does.
    Dask sets ``MALLOC_TRIM_THRESHOLD_``, which turns off glibc's adaptive thresholds, so every
    large array (a batch of network inputs, an activation) is mapped fresh from the kernel and
    its pages faulted in again; and a worker runs its task in a thread, whose own malloc arena
    hands memory back the same way. Without the first and with one arena
    (``MALLOC_ARENA_MAX=1``; a worker runs one task at a time), the kernel's share of a
    worker's time falls from about a fifth to a few per cent (``benchmarks/bench_batch.py``)."""
    import dask

    environ = dict(dask.config.get(_SPAWN_ENVIRON, default={}) or {})
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    environ["MALLOC_ARENA_MAX"] = "1"
    return environ


@contextlib.contextmanager
def _workers_ignore_sigint():
    """Worker processes started in the block ignore Ctrl-C (they inherit the ignored signal):
    this process stops them itself, so an interrupted run prints one line, not their
    tracebacks. A Ctrl-C pressed while they start is ignored too (press it again)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_locked(
    input_dir,
    model_path: str,
    out_dir: Path,
    scheduler,
    workers,
    params,
    gradcam,
    torch_threads,
    exclude,
    formats,
    priors,
    views=None,
) -> Generator[Progress, None, BatchResult]:
    """:func:`run_batch` once this process holds the output folder's lock."""
    from napari_chromosome_sort.classification.predict import PriorOptions

    jobs = find_spreads(input_dir, out_dir, exclude=exclude)
    renamed = renamed_spreads(jobs, input_dir)
    pdict = _params_to_dict(params)
    priors = priors or PriorOptions()
    spreads = out_dir / "spreads"
    snapshot, model_sha = _prepare_spreads(spreads, jobs, model_path)
    fp = fingerprint(model_path, pdict, gradcam, priors, views, model_sha256=model_sha)
    todo = [j for j in jobs if not is_done(j, fp)]
    skipped = len(jobs) - len(todo)
    total = len(jobs) + 1
    step = skipped
    failures: dict[str, str] = {}
    note = f"; {len(renamed)} spread name(s) made distinct" if renamed else ""
    yield Progress(step, total, f"{skipped} spread(s) already done, {len(todo)} to run{note}")

    kwargs = dict(
        model_path=str(snapshot),
        model_sha256=model_sha,
        params=pdict,
        gradcam=gradcam,
        torch_threads=torch_threads,
        fingerprint=fp,
        priors=priors,
        views=views,
    )
    if todo and scheduler == "serial":
        for job in todo:
            try:
                process_spread(job, **kwargs)
            except Exception as error:  # noqa: BLE001 - one bad spread must not stop the run
                failures[job.image] = f"{type(error).__name__}: {error}"
            step += 1
            yield Progress(step, total, f"{job.sample}/{job.stem}", {"failed": len(failures)})
    elif todo:
        from distributed import Client, LocalCluster, as_completed

        # Dask's routine warnings (a nanny "killing" its worker at shutdown, memory notes) say
        # nothing a user must act on; failures reach the user through the futures instead.
        logging.getLogger("distributed").setLevel(DASK_LOG_LEVEL)

        cluster = None
        if scheduler:
            client = Client(scheduler, timeout="20s")
        else:
            import dask

            n = workers or os.cpu_count() or 1
            with dask.config.set({_SPAWN_ENVIRON: _worker_environ()}), _workers_ignore_sigint():
                cluster = LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    host="127.0.0.1",
                    silence_logs=DASK_LOG_LEVEL,  # the workers' own logs
                )
            client = Client(cluster)
        try:
            futures = {
                client.submit(
                    process_spread, job, pure=False, key=f"spread-{uuid.uuid4().hex}", **kwargs
                ): job
                for job in todo
            }
            for future in as_completed(futures):
                job = futures[future]
                try:
                    future.result()
                except Exception as error:  # noqa: BLE001
                    failures[job.image] = f"{type(error).__name__}: {error}"
                step += 1
                yield Progress(step, total, f"{job.sample}/{job.stem}", {"failed": len(failures)})
        except KeyboardInterrupt:  # stopping the workers is expected now: no warnings about it
            logging.getLogger("distributed").setLevel(logging.ERROR)
            raise
        finally:
            for f in futures if "futures" in locals() else ():
                f.cancel()
            client.close()
            if cluster is not None:
                cluster.close()

    confusion = load_confusion(snapshot)  # the run's one copy of the model
    remove_owned(snapshot, spreads, OWN_NAMES)
    objects = collect_objects(out_dir, jobs)
    summary, comparisons, files = write_reports(
        out_dir, objects, formats=formats, confusion=confusion
    )
    if failures:
        write_csv_atomic(
            pd.DataFrame({"image": list(failures), "error": list(failures.values())}),
            out_dir / "failures.csv",
        )
        files.append(out_dir / "failures.csv")
    record_written(files)
    yield Progress(total, total, "reports written")
    return BatchResult(
        out_dir=out_dir,
        objects=objects,
        summary=summary,
        comparisons=comparisons,
        n_spreads=len(jobs),
        n_skipped=skipped,
        n_failed=len(failures),
        failures=failures,
        files=files,
        renamed=renamed,
    )
