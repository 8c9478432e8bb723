"""Progress reports yielded by every long-running step (training, batch prediction...).

Widgets run the generators in napari thread workers, the CLI wraps them in tqdm, tests just
iterate. A consumer cancels by no longer iterating (``generator.close()``).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Progress:
    """One step of a long task; the last one of a task carries its ``result``."""

    step: int
    total: int
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    result: Any = None

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 1.0


def run_to_end(steps: Iterator[Progress] | Generator[Progress, None, Any]) -> Any:
    """Drain a progress generator and return the ``result`` of its last report."""
    result = None
    for report in steps:
        if report.result is not None:
            result = report.result
    return result


def relay(steps: Iterator[Progress]) -> Generator[Progress, None, Any]:
    """Pass on every report of ``steps`` but the final one, whose ``result`` is returned:
    ``result = yield from relay(steps)`` inside another progress generator."""
    result = None
    for report in steps:
        if report.result is not None:
            result = report.result
        else:
            yield report
    return result


def with_tqdm(steps: Iterator[Progress], desc: str = "", disable: bool | None = None) -> Any:
    """Drain a progress generator with a tqdm bar on stderr; returns the final result."""
    from tqdm import tqdm

    result = None
    with tqdm(desc=desc, unit="step", disable=disable, leave=False) as bar:
        for report in steps:
            bar.total = report.total
            bar.n = report.step
            if report.metrics:
                bar.set_postfix({k: f"{v:.3g}" for k, v in report.metrics.items()})
            elif report.message:
                bar.set_postfix_str(report.message)
            bar.refresh()
            if report.result is not None:
                result = report.result
    return result
