"""Where a batch run's tasks run: in this process one after another, on a local Dask cluster of
one-thread worker processes, or on an existing Dask scheduler. Each runner is a generator of
``(job, error or None)`` as the spreads finish; a failed spread does not stop the others.

Dask is the ``batch`` extra: it is imported only when a cluster is asked for."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import threading
import uuid
from collections.abc import Iterator

from napari_chromosome_sort.batch.jobs import SpreadJob
from napari_chromosome_sort.batch.spread import SpreadSettings, process_spread

# Dask's log level in a batch run: errors only, unless CHROMOSORT_DASK_LOGS names a level (INFO).
DASK_LOG_LEVEL = getattr(logging, os.environ.get("CHROMOSORT_DASK_LOGS", "ERROR").upper(), 40)

_SPAWN_ENVIRON = "distributed.nanny.pre-spawn-environ"


def dask_available() -> bool:
    """Whether Dask's distributed scheduler (the ``batch`` extra) is installed."""
    try:
        return importlib.util.find_spec("distributed") is not None
    except ValueError:  # a module set to None in sys.modules
        return False


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def run_serially(
    todo: list[SpreadJob], settings: SpreadSettings
) -> Iterator[tuple[SpreadJob, str | None]]:
    """Every job in this process, one after another."""
    for job in todo:
        try:
            process_spread(job, settings)
        except Exception as error:  # noqa: BLE001 - one bad spread must not stop the run
            yield job, _error_text(error)
        else:
            yield job, None


def run_on_dask(
    todo: list[SpreadJob], settings: SpreadSettings, scheduler: str | None, workers: int | None
) -> Iterator[tuple[SpreadJob, str | None]]:
    """Every job on the Dask scheduler at ``scheduler`` (an address), or on a local cluster of
    ``workers`` processes (default: all cores) when ``scheduler`` is None; results as they
    finish. Closing the generator cancels what is left and stops a local cluster."""
    from distributed import Client, as_completed  # the batch extra

    # Dask's routine warnings (a nanny "killing" its worker at shutdown, memory notes) say
    # nothing a user must act on; failures reach the user through the futures instead.
    logging.getLogger("distributed").setLevel(DASK_LOG_LEVEL)
    cluster = None if scheduler else _local_cluster(workers or os.cpu_count() or 1)
    client = Client(scheduler, timeout="20s") if scheduler else Client(cluster)
    futures: dict = {}
    try:
        futures = {
            client.submit(
                process_spread, job, settings, pure=False, key=f"spread-{uuid.uuid4().hex}"
            ): job
            for job in todo
        }
        for future in as_completed(futures):
            try:
                future.result()
            except Exception as error:  # noqa: BLE001
                yield futures[future], _error_text(error)
            else:
                yield futures[future], None
    except KeyboardInterrupt:  # stopping the workers is expected now: no warnings about it
        logging.getLogger("distributed").setLevel(logging.ERROR)
        raise
    finally:
        for future in futures:
            future.cancel()
        client.close()
        if cluster is not None:
            cluster.close()


def _local_cluster(n_workers: int):
    """A local Dask cluster of ``n_workers`` one-thread processes, allocating memory as one
    process does (:func:`_worker_environ`) and leaving Ctrl-C to this process."""
    import dask  # the batch extra
    from distributed import LocalCluster

    with dask.config.set({_SPAWN_ENVIRON: _worker_environ()}), _workers_ignore_sigint():
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            silence_logs=DASK_LOG_LEVEL,  # the workers' own logs
        )


def _worker_environ() -> dict:
    """The environment of new worker processes: Dask's, but allocating as one process does.
    Dask sets ``MALLOC_TRIM_THRESHOLD_``, which turns off glibc's adaptive thresholds, so every
    large array (a batch of network inputs, an activation) is mapped fresh from the kernel and
    its pages faulted in again; and a worker runs its task in a thread, whose own malloc arena
    hands memory back the same way. Without the first and with one arena
    (``MALLOC_ARENA_MAX=1``; a worker runs one task at a time), the kernel's share of a
    worker's time falls from about a fifth to a few per cent (``benchmarks/bench_batch.py``)."""
    import dask  # the batch extra

    environ = dict(dask.config.get(_SPAWN_ENVIRON, default={}) or {})
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    environ["MALLOC_ARENA_MAX"] = "1"
    return environ


@contextlib.contextmanager
def _workers_ignore_sigint():
    """Worker processes started in the block ignore Ctrl-C (they inherit the ignored signal):
    this process stops them itself, so an interrupted run prints one line, not their
    tracebacks. A Ctrl-C pressed while they start is ignored too (press it again)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
