"""Samples, their median and p90, and one benchmark's row (ours, Salt's, the budget)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Series:
    """Samples of one quantity, in the unit of the row they belong to."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else math.nan

    @property
    def p90(self) -> float:
        """The 90th percentile by the nearest-rank method (the max for fewer than 10 samples)."""
        if not self.values:
            return math.nan
        ranked = sorted(self.values)
        return ranked[max(0, math.ceil(0.9 * len(ranked)) - 1)]

    @property
    def low(self) -> float:
        return min(self.values) if self.values else math.nan


@dataclass(frozen=True, slots=True)
class Row:
    """One benchmark: our samples, Salt's (None where Salt has no counterpart), the budget.

    Every quantity is "lower is better" (seconds or MiB); ``ratio`` is Salt's median over
    ours, so 5.0 means five times faster or smaller than Salt.
    """

    name: str
    unit: str
    ours: Series
    salt: Series | None = None
    budget: float | None = None
    note: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    defect: str = ""  # set when the samples themselves show a failure (e.g. lost returns)

    @property
    def ratio(self) -> float | None:
        if self.salt is None or not self.salt.values or not self.ours.values:
            return None
        return self.salt.median / self.ours.median if self.ours.median else None

    @property
    def verdict(self) -> str:
        if self.defect:
            return f"FAIL ({self.defect})"
        if self.budget is None:
            return "n/a"
        if not self.ours.values or math.isnan(self.ours.median):
            return "FAIL (no samples)"
        return "pass" if self.ours.median <= self.budget else "FAIL"
