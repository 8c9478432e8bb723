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
import json
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

from .atomic import write_csv_atomic
from .errors import ChromosortError
from .io import IMAGE_SUFFIXES
from .progress import Progress

if TYPE_CHECKING:
    from .classification.predict import PriorOptions

DONE = "DONE"
RESULT_FILES = ("objects.csv", "labels.npy")  # a finished spread has each of these
LOCK = ".chromosort-batch.lock"


@dataclass
class SpreadJob:
    """One spread to process: its sample, image file, unique stem and output folder."""

    sample: str
    image: str  # absolute path
    stem: str
    out_dir: str  # OUT_DIR/spreads/<sample>/<stem>


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
    jobs = []
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
        jobs.append(SpreadJob(sample, str(path), stem, str(spreads_root / sample / stem)))
    if not jobs:
        raise ChromosortError(
            f"no images ({', '.join(extensions)}) below {root}; put spreads in one sub-folder "
            "per sample"
        )
    return jobs


def fingerprint(
    model_path,
    params: dict | None,
    gradcam: bool,
    priors: PriorOptions | None = None,
    views: int | None = None,
) -> str:
    """What a finished spread was computed with: model file (size, mtime), segmentation
    parameters, Grad-CAM flag, package version, prior-estimate options and views averaged. A
    spread whose DONE marker holds another fingerprint is recomputed (the model or the
    settings changed since)."""
    import hashlib

    from . import __version__
    from .classification.predict import PriorOptions

    st = os.stat(model_path)
    key = json.dumps(
        [str(model_path), st.st_size, st.st_mtime_ns, params or {}, bool(gradcam), __version__]
        + [(priors or PriorOptions()).key(), {"views": views}],
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
    if fingerprint is None:
        return True
    try:
        return json.loads(marker.read_text()).get("fingerprint") == fingerprint
    except (OSError, ValueError):
        return False


# ------------------------------------------------------------------ the task

_MODEL_CACHE: dict = {}


def _load_model_cached(model_path: str):
    from .classification import model_io

    key = (model_path, os.stat(model_path).st_mtime_ns)
    model = _MODEL_CACHE.get(key)
    if model is None:
        _MODEL_CACHE.clear()
        model = model_io.load_model(model_path)
        model.eval()
        _MODEL_CACHE[key] = model
    return model


def _params_from_dict(params: dict | None):
    if not params:
        return None
    from .segmentation import SegmentationParams

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
) -> dict:
    """Segment, classify (and Grad-CAM) one spread; write its results atomically. Returns a small
    summary dict (picklable). Runs in a worker: loads the model from ``model_path``. ``priors``:
    :class:`.predict.PriorOptions` (default: the defaults); ``views``: dihedral views averaged
    (None: the model's own number)."""
    import numpy as np
    import torch

    from . import io
    from .classification import predict

    priors = priors or predict.PriorOptions()
    previous_threads = torch.get_num_threads()
    final = Path(job.out_dir)
    if is_done(job, fingerprint):
        return {"image": job.image, "status": "skipped"}
    model = _load_model_cached(model_path)
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

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        objects.to_csv(tmp / "objects.csv", index=False)
        np.save(tmp / "labels.npy", np.asarray(pred.segmentation.labels, dtype=np.int32))
        if gradcam and pred.gradcam_map is not None:
            np.save(tmp / "gradcam.npy", np.asarray(pred.gradcam_map, dtype=np.float32))
        info = {
            "image": job.image,
            "sample": job.sample,
            "spread": job.stem,
            "model": str(model_path),
            "n_objects": int(len(objects)),
            "n_classified": int(objects["class"].notna().sum()) if "class" in objects else 0,
            "shape": list(np.shape(image)),
            "fingerprint": fingerprint,
            "cost": _cost_since(started),
        }
        (tmp / DONE).write_text(json.dumps(info))
        if final.exists():  # unfinished leftover, stale result, or a racing duplicate
            if is_done(job, fingerprint):
                shutil.rmtree(tmp)
                return {"image": job.image, "status": "skipped"}
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"image": job.image, "status": "done", **info}


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


def collect_objects(out_dir) -> pd.DataFrame:
    """Concatenate every finished spread's ``objects.csv`` (sorted by sample, spread)."""
    spreads = Path(out_dir) / "spreads"
    frames = []
    for done in sorted(spreads.glob(f"*/*/{DONE}")):
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


def write_reports(out_dir, objects: pd.DataFrame, classes=None, formats=("png", "svg")):
    """summary.csv, comparisons.csv, stats.txt and the stacked-bar plot from ``objects``."""
    from .analysis import plots, readout

    out_dir = Path(out_dir)
    files = []
    write_csv_atomic(objects, out_dir / "objects.csv")
    files.append(out_dir / "objects.csv")
    classified = objects[objects["class"].notna()] if "class" in objects else objects.iloc[:0]
    if classified.empty:
        return pd.DataFrame(), [], files
    if classes is None:
        classes = [c[2:] for c in objects.columns if c.startswith("p_")] or None
    summary = readout.summarize(classified, classes=classes)
    write_csv_atomic(summary, out_dir / "summary.csv")
    files.append(out_dir / "summary.csv")
    comparisons = readout.compare_all(classified, classes=classes)
    lines = readout.comparison_lines(classified, comparisons, classes=classes)
    if comparisons:
        write_csv_atomic(
            pd.DataFrame([c.as_dict() for c in comparisons]), out_dir / "comparisons.csv"
        )
        files.append(out_dir / "comparisons.csv")
    (out_dir / "stats.txt").write_text("\n".join(lines) + "\n")
    files.append(out_dir / "stats.txt")
    fig = plots.stacked_bar(summary, comparisons=comparisons)
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
    try:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the block
    except OSError as error:
        raise ChromosortError(f"cannot lock output folder {out_dir}: {error}") from None
    with handle:
        if not _try_lock(handle):
            holder = _holder(handle) or "another process"
            raise ChromosortError(
                f"another chromosort batch ({holder}) is writing to {out_dir}; wait for it to "
                "finish or choose another output folder"
            )
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}")
        handle.flush()
        yield path  # closing the file releases the lock


# ------------------------------------------------------------------ the run


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
) -> Generator[Progress, None, BatchResult]:
    """Generator of :class:`Progress` that returns a :class:`BatchResult`.

    ``scheduler``: ``None`` -> a local ``distributed.LocalCluster`` with ``workers`` processes
    (default: all cores) of one thread each, or in this process when Dask is not installed (the
    ``batch`` extra); an address (``tcp://host:port``) -> that existing Dask scheduler;
    ``"serial"`` -> in this process, one spread after another (no Dask).
    Failures of single spreads are reported in ``result.failures`` and the run goes on; the
    failed spreads are retried by the next run. ``params``: segmentation parameters
    (:class:`.SegmentationParams` or dict); ``priors``: :class:`.predict.PriorOptions`;
    ``views``: dihedral views averaged per crop (None: the model's own number).
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
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ChromosortError(f"cannot create output folder {out_dir}: {error}") from None
    with output_lock(out_dir):
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
    from .classification.predict import PriorOptions

    jobs = find_spreads(input_dir, out_dir, exclude=exclude)
    pdict = _params_to_dict(params)
    priors = priors or PriorOptions()
    fp = fingerprint(model_path, pdict, gradcam, priors, views)
    todo = [j for j in jobs if not is_done(j, fp)]
    skipped = len(jobs) - len(todo)
    total = len(jobs) + 1
    # temporary leftovers of interrupted runs (no other run is writing: we hold the lock)
    for leftover in (out_dir / "spreads").glob("*/.*.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    step = skipped
    failures: dict[str, str] = {}
    yield Progress(step, total, f"{skipped} spread(s) already done, {len(todo)} to run")

    kwargs = dict(
        model_path=model_path,
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

        cluster = None
        if scheduler:
            client = Client(scheduler, timeout="20s")
        else:
            import dask

            n = workers or os.cpu_count() or 1
            with dask.config.set({_SPAWN_ENVIRON: _worker_environ()}):
                cluster = LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    host="127.0.0.1",
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
        finally:
            for f in futures if "futures" in locals() else ():
                f.cancel()
            client.close()
            if cluster is not None:
                cluster.close()

    objects = collect_objects(out_dir)
    summary, comparisons, files = write_reports(out_dir, objects, formats=formats)
    if failures:
        write_csv_atomic(
            pd.DataFrame({"image": list(failures), "error": list(failures.values())}),
            out_dir / "failures.csv",
        )
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
    )
