"""Time as a dependency, so tests can move it instead of sleeping."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    """Source of the current time in integer microseconds since the Unix epoch."""

    def now_us(self) -> int:
        """The current time."""
        ...


class SystemClock:
    """The real wall clock."""

    def now_us(self) -> int:
        """Wall-clock time in microseconds."""
        return time.time_ns() // 1000


class FileClock:
    """Time read from a file holding integer microseconds since the epoch.

    For end-to-end tests only (``BUDGETD_CLOCK_FILE``): it lets a test move the clock of real
    budgetd processes across a window boundary instead of sleeping until it.
    """

    def __init__(self, path: Path) -> None:
        self._path = path

    def now_us(self) -> int:
        """The time the file says."""
        return int(self._path.read_text().strip())


class ManualClock:
    """A clock that moves only when told to; for tests."""

    def __init__(self, start_us: int = 1_700_000_000_000_000) -> None:
        self._now = start_us

    def now_us(self) -> int:
        """The time set last."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self._now += int(seconds * 1_000_000)
