"""Progress reports of every long-running step (training, batch prediction...).

A long step is a generator that yields :class:`Progress` reports and returns its result
(``Generator[Progress, None, T]``). Widgets run it in a napari thread worker, whose
``returned`` signal hands over the result; the CLI drains it with :func:`with_tqdm`, tests and
scripts with :func:`run_to_end`; a step inside another passes its reports on with
``result = yield from step(...)`` (or :func:`relay` to change them on the way). A consumer
cancels by no longer iterating (``generator.close()``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Progress:
    """One step of a long task."""

    step: int
    total: int
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """Share of the task done (1.0 when the total is 0)."""
        return self.step / self.total if self.total else 1.0


def run_to_end(
    steps: Generator[Progress, None, T], each: Callable[[Progress], object] | None = None
) -> T:
    """Drain a progress generator (calling ``each(report)`` on every report) and return what
    it returns."""
    while True:
        try:
            report = next(steps)
        except StopIteration as stop:
            return stop.value
        if each is not None:
            each(report)


def relay(
    steps: Generator[Progress, None, T], change: Callable[[Progress], Progress]
) -> Generator[Progress, None, T]:
    """Pass on ``change(report)`` for every report of ``steps`` and return its result:
    ``result = yield from relay(inner(...), change)`` inside another progress generator.
    Closing the outer generator closes ``steps`` too, as ``yield from`` does."""
    try:
        while True:
            try:
                report = next(steps)
            except StopIteration as stop:
                return stop.value
            yield change(report)
    finally:
        steps.close()


def with_tqdm(
    steps: Generator[Progress, None, T],
    desc: str = "",
    disable: bool | None = None,
    leave: bool = False,
) -> T:
    """Drain a progress generator with a tqdm bar on stderr (kept after the end with ``leave``);
    returns what it returns."""
    from tqdm import tqdm

    with tqdm(desc=desc, unit="step", disable=disable, leave=leave) as bar:

        def show(report: Progress) -> None:
            """Move the bar to ``report`` and show its metrics or message."""
            bar.total = report.total
            bar.n = report.step
            if report.metrics:
                bar.set_postfix({k: f"{v:.3g}" for k, v in report.metrics.items()})
            elif report.message:
                bar.set_postfix_str(report.message)
            bar.refresh()

        return run_to_end(steps, show)


class StepTimer:
    """Time left in the current step of a long job, from its progress so far: the step is the
    report's message up to its first digit ("choosing the model design: fit 12 of 96")."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.key: str | None = None
        self.start = 0.0
        self.first = 0

    def left(self, report: Progress) -> str:
        """ "about 40 s left in this step", or "" while too little is known."""
        key = re.split(r"\d", report.message, maxsplit=1)[0]
        now = self.clock()
        if key != self.key or report.step < self.first:
            self.key, self.start, self.first = key, now, report.step
            return ""
        done, elapsed = report.step - self.first, now - self.start
        if done <= 0 or elapsed < 2.0 or report.total <= report.step:
            return ""
        seconds = elapsed / done * (report.total - report.step)
        amount = f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
        return f"about {amount} left in this step"
