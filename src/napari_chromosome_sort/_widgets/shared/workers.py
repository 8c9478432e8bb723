"""Background jobs for the dock widgets (napari thread workers), and errors shown to the user."""

from __future__ import annotations

import functools
import inspect
import traceback
from collections.abc import Callable
from typing import Any

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info

from napari_chromosome_sort.errors import ChromosortError


def report_error(error: BaseException, what: str = "") -> None:
    """Turn an exception into a napari notification with the reason (never a silent failure)."""
    prefix = f"{what}: " if what else ""
    if isinstance(error, ChromosortError):
        show_error(f"{prefix}{error}")
    else:
        show_error(f"{prefix}{type(error).__name__}: {error}")
        traceback.print_exception(type(error), error, error.__traceback__)


def notify(message: str) -> None:
    """Show an information notification."""
    show_info(message)


def start_worker(
    func: Callable[..., Any],
    *args: Any,
    on_yield: Callable[[Any], None] | None = None,
    on_return: Callable[[Any], None] | None = None,
    on_finish: Callable[[], None] | None = None,
    on_abort: Callable[[], None] | None = None,
    what: str = "",
    **kwargs: Any,
):
    """Run ``func`` (a generator or plain function) in a napari thread worker and start it.

    A cancelled generator is closed (its ``finally`` blocks run: locks released, temporary files
    removed) rather than left suspended until the worker is collected. Errors become a
    notification naming ``what`` (:func:`report_error`)."""
    steps = func(*args, **kwargs) if inspect.isgeneratorfunction(func) else None
    if steps is not None:

        def run_steps():
            return (yield from steps)

        worker = create_worker(run_steps, _start_thread=False, _ignore_errors=True)
        worker.aborted.connect(steps.close)
    else:
        worker = create_worker(func, *args, _start_thread=False, _ignore_errors=True, **kwargs)
    if on_yield is not None and hasattr(worker, "yielded"):
        worker.yielded.connect(on_yield)
    if on_return is not None:
        worker.returned.connect(on_return)
    worker.errored.connect(lambda error: report_error(error, what))
    if on_abort is not None and hasattr(worker, "aborted"):
        worker.aborted.connect(on_abort)
    if on_finish is not None:
        worker.finished.connect(on_finish)
    worker.start()
    return worker


@functools.cache
def warm_imports() -> None:
    """Import the heavy libraries on the GUI thread once, before a worker needs them.

    A C-extension import inside a worker thread holds the GIL for long stretches (hundreds of
    ms for scikit-learn or torch) and would stall the event loop; importing them up front
    costs one short pause when the first job starts instead. Cached: later calls return at once.
    These imports are inside the function on purpose: they are the heavy optional ones.
    """
    import scipy.optimize  # noqa: F401
    import sklearn.linear_model  # noqa: F401 - the learning curve of training.checks
    import sklearn.model_selection  # noqa: F401
    import sklearn.pipeline  # noqa: F401
    import torch  # noqa: F401

    from napari_chromosome_sort.classification.models._torchvision_compat import import_torchvision

    import_torchvision()
