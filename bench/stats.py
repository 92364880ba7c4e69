"""Repeated runs reduced to what RESULTS.md shows: median and min-max."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from bench.load import LoadResult


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured quantity over several runs."""

    median: float
    low: float
    high: float

    def show(self, digits: int = 0) -> str:
        """``median (min-max)``."""
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}-{self.high:.{digits}f})"


@dataclass(frozen=True, slots=True)
class Summary:
    """A scenario's figures over its runs."""

    rps: Figure
    p50_ms: Figure
    p99_ms: Figure
    client_cpu: Figure
    errors: int


def figure(values: list[float]) -> Figure:
    """Median, min and max."""
    return Figure(statistics.median(values), min(values), max(values))


def repeat(run: Callable[[], LoadResult], times: int) -> Summary:
    """Run a load ``times`` times and summarize."""
    results = [run() for _ in range(times)]
    return Summary(
        rps=figure([r.rps for r in results]),
        p50_ms=figure([r.p50_ms for r in results]),
        p99_ms=figure([r.p99_ms for r in results]),
        client_cpu=figure([r.client_cpu for r in results]),
        errors=sum(r.errors for r in results),
    )
