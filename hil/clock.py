"""Clocks that drive scenario time: the system's monotonic clock, or a manual one for tests."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Anything that tells the time in seconds; only differences matter."""

    def now(self) -> float: ...


class SystemClock:
    """Real time from the monotonic clock."""

    def now(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to, so a test can step a scenario deterministically."""

    def __init__(self, start: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._now = start

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by `seconds` and return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance by {seconds})")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        """Jump to an absolute time (only forward)."""
        with self._lock:
            if now < self._now:
                raise ValueError(f"a clock cannot go backwards ({now} < {self._now})")
            self._now = now
