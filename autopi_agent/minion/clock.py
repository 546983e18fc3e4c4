"""Clocks for the scheduler and loggers: the real one, and a manual one that tests and
simulators move by hand (no real sleeping)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Time as the scheduler sees it: wall time for cron, monotonic time for intervals."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch (may jump when NTP or GPS sets the clock)."""
        ...

    def monotonic(self) -> float:
        """Seconds that only ever move forward, at the rate of real time."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of monotonic time."""
        ...


class SystemClock:
    """The host's clocks and asyncio's sleep."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when told to; sleepers wake in deadline order.

    ``advance`` wakes each sleeper whose deadline is passed, one deadline at a time, and
    gives woken tasks the chance to run (and to go back to sleep) before moving on, so a
    periodic task sees every one of its ticks.
    """

    def __init__(self, wall: float = 1_700_000_000.0, monotonic: float = 1_000.0) -> None:
        self._mono = monotonic
        self._offset = wall - monotonic
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self._mono + self._offset

    def monotonic(self) -> float:
        return self._mono

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock now."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._order), future))
        try:
            await future
        finally:
            future.cancel()  # a cancelled sleeper leaves the queue at the next advance

    def jump_wall(self, seconds: float) -> None:
        """Move the wall clock alone, as an NTP correction does; monotonic time stays."""
        self._offset += seconds

    async def advance(self, seconds: float, *, settle: float = 2.0) -> None:
        """Move time forward by ``seconds``, waking sleepers in deadline order.

        After each wake-up, waits (up to ``settle`` real seconds) until as many tasks sleep
        as before it, i.e. until the woken ones have done their work and slept again.
        """
        target = self._mono + seconds
        await self._settle(0, 0.0)  # let tasks about to sleep register first
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            if future.done():
                continue
            waiting = self.sleepers + 1
            self._mono = max(self._mono, deadline)
            future.set_result(None)
            await self._settle(waiting, settle)
        self._mono = max(self._mono, target)
        await asyncio.sleep(0)

    async def _settle(self, waiting: int, limit: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        for _ in range(10):  # most wake-ups need only a few turns of the loop
            await asyncio.sleep(0)
        while self.sleepers < waiting and loop.time() < deadline:
            await asyncio.sleep(0.001)
