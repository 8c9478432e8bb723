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

The modules, by job:

* :mod:`.jobs`: the spreads below the input folder, one :class:`SpreadJob` each, distinct ids;
* :mod:`.fingerprints`: what a finished spread was computed with, and whether it is done;
* :mod:`.outputs`: the output folder claimed, leftovers removed, the one model copy of a run;
* :mod:`.lock`: one run per output folder;
* :mod:`.spread`: one spread segmented, classified and written atomically (a worker's task);
* :mod:`.cluster`: the tasks run in this process or on a Dask cluster;
* :mod:`.reports`: every spread's objects merged, summary, comparisons and plot;
* :mod:`.run`: :func:`run_batch` and its :class:`BatchOptions`.
"""

from napari_chromosome_sort.batch.cluster import dask_available
from napari_chromosome_sort.batch.fingerprints import (
    DONE,
    RESULT_FILES,
    file_digest,
    fingerprint,
    is_done,
)
from napari_chromosome_sort.batch.jobs import SpreadJob, find_spreads, renamed_spreads
from napari_chromosome_sort.batch.lock import LOCK, output_lock
from napari_chromosome_sort.batch.reports import collect_objects, write_reports
from napari_chromosome_sort.batch.run import BatchOptions, BatchResult, run_batch
from napari_chromosome_sort.batch.spread import SpreadSettings, process_spread

__all__ = [
    "DONE",
    "LOCK",
    "RESULT_FILES",
    "BatchOptions",
    "BatchResult",
    "SpreadJob",
    "SpreadSettings",
    "collect_objects",
    "dask_available",
    "file_digest",
    "find_spreads",
    "fingerprint",
    "is_done",
    "output_lock",
    "process_spread",
    "renamed_spreads",
    "run_batch",
    "write_reports",
]
