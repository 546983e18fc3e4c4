"""Keyframed signals: linear interpolation, steps, looping and exact integrals (pure)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Timeline:
    """A value that moves linearly between keyframes and holds still beyond the ends.

    With `period` set, time wraps around (the scenario loops); integrals still count
    every lap, so a distance keeps growing while the speed profile repeats.
    """

    times: tuple[float, ...]
    values: tuple[float, ...]
    period: float | None = None

    @classmethod
    def constant(cls, value: float) -> Timeline:
        return cls((0.0,), (float(value),))

    @classmethod
    def from_points(cls, points: Sequence[Sequence[float]], period: float | None = None) -> Timeline:
        """Build from `[[t, value], ...]`; times must start at >= 0 and increase."""
        if not points:
            raise ValueError("a timeline needs at least one [time, value] keyframe")
        times = tuple(float(p[0]) for p in points)
        values = tuple(float(p[1]) for p in points)
        if any(len(p) != 2 for p in points):
            raise ValueError("each keyframe is a [time, value] pair")
        if times[0] < 0 or any(b <= a for a, b in zip(times, times[1:], strict=False)):
            raise ValueError(f"keyframe times must be >= 0 and strictly increasing: {times}")
        if not all(math.isfinite(v) for v in values):
            raise ValueError("keyframe values must be finite numbers")
        return cls(times, values, period)

    def _wrap(self, t: float) -> float:
        if self.period:
            return t % self.period
        return t

    def at(self, t: float) -> float:
        """The value at time `t` (seconds)."""
        t = self._wrap(t)
        i = bisect.bisect_right(self.times, t)
        if i == 0:
            return self.values[0]
        if i == len(self.times):
            return self.values[-1]
        t0, t1 = self.times[i - 1], self.times[i]
        v0, v1 = self.values[i - 1], self.values[i]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    def slope(self, t: float) -> float:
        """The rate of change at time `t` (value units per second); 0 outside the keyframes."""
        t = self._wrap(t)
        i = bisect.bisect_right(self.times, t)
        if i == 0 or i == len(self.times):
            return 0.0
        t0, t1 = self.times[i - 1], self.times[i]
        return (self.values[i] - self.values[i - 1]) / (t1 - t0)

    def integral(self, t: float) -> float:
        """The integral of the value from 0 to `t` (value × seconds), counting every lap."""
        if t <= 0:
            return 0.0
        if not self.period:
            return self._integral_to(t)
        laps, rest = divmod(t, self.period)
        return laps * self._integral_to(self.period) + self._integral_to(rest)

    def _integral_to(self, x: float) -> float:
        total = 0.0
        edges = [0.0, *[tt for tt in self.times if 0 < tt < x], x]
        for a, b in zip(edges, edges[1:], strict=False):
            # the value is linear on [a, b] because the edges include every keyframe inside
            total += (self._at_unwrapped(a) + self._at_unwrapped(b)) / 2 * (b - a)
        return total

    def _at_unwrapped(self, t: float) -> float:
        return Timeline(self.times, self.values).at(t)


@dataclass(frozen=True, slots=True)
class StepTimeline:
    """An on/off value that changes at given times (ignition, engine running)."""

    times: tuple[float, ...]
    values: tuple[bool, ...]
    period: float | None = None

    @classmethod
    def constant(cls, value: bool) -> StepTimeline:
        return cls((0.0,), (bool(value),))

    @classmethod
    def from_points(cls, points: Sequence[Sequence[object]], period: float | None = None) -> StepTimeline:
        if not points or any(len(p) != 2 for p in points):
            raise ValueError("a step timeline is a non-empty list of [time, true|false] pairs")
        times = tuple(float(p[0]) for p in points)  # type: ignore[arg-type]
        values = tuple(p[1] for p in points)
        if not all(isinstance(v, bool) for v in values):
            raise ValueError("step values must be true or false")
        if times[0] < 0 or any(b <= a for a, b in zip(times, times[1:], strict=False)):
            raise ValueError(f"step times must be >= 0 and strictly increasing: {times}")
        return cls(times, tuple(bool(v) for v in values), period)

    def at(self, t: float) -> bool:
        if self.period:
            t = t % self.period
        i = bisect.bisect_right(self.times, t)
        return self.values[max(i - 1, 0)]
