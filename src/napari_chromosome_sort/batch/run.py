"""A batch run: the spreads found, the output folder claimed and locked, every spread not yet
done computed (in this process or on Dask), then the reports written."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Generator
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path

import pandas as pd

from napari_chromosome_sort.analysis.confusion import load_confusion
from napari_chromosome_sort.batch.cluster import dask_available, run_on_dask, run_serially
from napari_chromosome_sort.batch.fingerprints import DONE, fingerprint, is_done
from napari_chromosome_sort.batch.jobs import find_spreads, renamed_spreads
from napari_chromosome_sort.batch.lock import LOCK, output_lock
from napari_chromosome_sort.batch.outputs import OWN_NAMES, claim_outputs, prepare_spreads
from napari_chromosome_sort.batch.reports import collect_objects, write_reports
from napari_chromosome_sort.batch.spread import SpreadSettings
from napari_chromosome_sort.classification.predict import PriorOptions, resolve_priors
from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.atomic import write_csv_atomic
from napari_chromosome_sort.files.safety import is_link, owns, record_written, remove_owned
from napari_chromosome_sort.progress import Progress


@dataclass
class BatchOptions:
    """How a batch run computes and reports (see :func:`run_batch`)."""

    scheduler: str | None = None
    workers: int | None = None
    params: dict | None = None  # segmentation parameters (None: the defaults)
    gradcam: bool = True
    torch_threads: int = 1
    exclude: tuple[str, ...] = ()
    formats: tuple[str, ...] = ("png", "svg")
    priors: PriorOptions = field(default_factory=PriorOptions)
    views: int | None = None
    overwrite: bool = False


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
    warnings: dict = field(default_factory=dict)  # "sample/spread" -> warnings of its prediction

    def warning_lines(self, shown: int = 5) -> list[str]:
        """One line per distinct warning (a spread unlike the model's training images), with
        how many spreads and which (the first ``shown``) it concerns."""
        spreads_of: dict[str, list[str]] = {}
        for spread, texts in self.warnings.items():
            for text in texts:
                spreads_of.setdefault(text, []).append(spread)
        lines = []
        for text, spreads in spreads_of.items():
            named = ", ".join(spreads[:shown]) + (", ..." if len(spreads) > shown else "")
            lines.append(f"{len(spreads)} spread(s) ({named}): {text}")
        return lines


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
    (:class:`.SegmentationParams` or dict); ``priors``: :class:`.predict.PriorOptions` (what it
    leaves unset as the model records, :func:`.predict.resolve_priors`);
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
    from napari_chromosome_sort.classification.models.model_io import read_metadata  # torch

    options = BatchOptions(
        scheduler=scheduler,
        workers=workers,
        params=_params_to_dict(params),
        gradcam=gradcam,
        torch_threads=torch_threads,
        exclude=tuple(exclude),
        formats=tuple(formats),
        priors=resolve_priors(read_metadata(model_path), priors or PriorOptions()),
        views=views,
        overwrite=overwrite,
    )
    out_dir = Path(out_dir).resolve()
    spreads = out_dir / "spreads"  # made by an earlier version: its lock beside, no marker
    legacy = (out_dir / LOCK).is_file() and not is_link(out_dir / LOCK) and not owns(spreads)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ChromosortError(f"cannot create output folder {out_dir}: {error}") from None
    with output_lock(out_dir):
        claim_outputs(out_dir, legacy, options.overwrite, options.formats)
        return (yield from _run_locked(input_dir, model_path, out_dir, options))


def _run_locked(
    input_dir, model_path: str, out_dir: Path, options: BatchOptions
) -> Generator[Progress, None, BatchResult]:
    """:func:`run_batch` once this process holds the output folder's lock."""
    jobs = find_spreads(input_dir, out_dir, exclude=options.exclude)
    renamed = renamed_spreads(jobs, input_dir)
    spreads = out_dir / "spreads"
    snapshot, model_sha = prepare_spreads(spreads, jobs, model_path)
    settings = SpreadSettings(
        model_path=str(snapshot),
        params=options.params,
        gradcam=options.gradcam,
        torch_threads=options.torch_threads,
        fingerprint=fingerprint(
            model_path,
            options.params,
            options.gradcam,
            options.priors,
            options.views,
            model_sha256=model_sha,
        ),
        priors=options.priors,
        views=options.views,
        model_sha256=model_sha,
    )
    todo = [j for j in jobs if not is_done(j, settings.fingerprint)]
    skipped = len(jobs) - len(todo)
    total = len(jobs) + 1
    failures: dict[str, str] = {}
    note = f"; {len(renamed)} spread name(s) made distinct" if renamed else ""
    yield Progress(skipped, total, f"{skipped} spread(s) already done, {len(todo)} to run{note}")
    if options.scheduler == "serial":
        runner = run_serially(todo, settings)
    else:
        runner = run_on_dask(todo, settings, options.scheduler, options.workers)
    with contextlib.closing(runner):  # a closed run stops its cluster
        for step, (job, error) in enumerate(runner if todo else (), start=skipped + 1):
            if error is not None:
                failures[job.image] = error
            yield Progress(step, total, f"{job.sample}/{job.stem}", {"failed": len(failures)})
    confusion = load_confusion(snapshot, Path(model_path).name)  # the run's copy of the model
    remove_owned(snapshot, spreads, OWN_NAMES)
    objects = collect_objects(out_dir, jobs)
    summary, comparisons, files = write_reports(
        out_dir, objects, formats=options.formats, confusion=confusion
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
        warnings=_spread_warnings(jobs),
    )


def _spread_warnings(jobs) -> dict[str, list[str]]:
    """The warnings each finished spread's prediction gave (recorded in its DONE marker, so a
    resumed run repeats those of the spreads it skips)."""
    found = {}
    for job in jobs:
        try:
            info = json.loads((Path(job.out_dir) / DONE).read_text())
        except (OSError, ValueError):
            continue
        texts = info.get("warnings") if isinstance(info, dict) else None
        if isinstance(texts, list) and texts:
            found[f"{job.sample}/{job.stem}"] = [str(text) for text in texts]
    return found
