"""Values the spool hands out: items, drop counts, statistics, and the sender's backoff."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack

__all__ = ["KINDS", "Backoff", "Drops", "Item", "Kind", "SpoolStats"]

Kind = Literal["return", "event", "telemetry"]
# Delivery priority: a job answer must not wait behind hours of buffered samples.
KINDS: tuple[Kind, ...] = ("return", "event", "telemetry")


@dataclass(frozen=True, slots=True)
class Item:
    """One spooled item: its id (the ``uid`` the master dedupes on), kind, time and payload."""

    id: str
    kind: Kind
    created: float
    payload: bytes

    @property
    def size(self) -> int:
        """Payload bytes, as counted against the spool's byte limit."""
        return len(self.payload)

    def data(self) -> dict[str, Any]:
        """The payload as it was put."""
        value = msgpack.unpackb(self.payload, raw=False, strict_map_key=False)
        assert isinstance(value, dict)
        return value


@dataclass(frozen=True, slots=True)
class Drops:
    """Items dropped by the limits, per kind."""

    returns: int = 0
    events: int = 0
    telemetry: int = 0

    @classmethod
    def of(cls, *counts: int) -> Drops:
        """Counts given in :data:`KINDS` order."""
        return cls(*counts)

    @property
    def total(self) -> int:
        return self.returns + self.events + self.telemetry

    def as_dict(self) -> dict[str, int]:
        """Counts by kind name, as reported in the drop event."""
        return {"return": self.returns, "event": self.events, "telemetry": self.telemetry}

    def __add__(self, other: Drops) -> Drops:
        return Drops(self.returns + other.returns, self.events + other.events,
                     self.telemetry + other.telemetry)


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """What the spool holds and what it had to drop; mappings are keyed by kind."""

    count: Mapping[str, int]
    bytes: Mapping[str, int]
    oldest: Mapping[str, float | None]
    dropped_since_start: Drops
    dropped_total: Drops
    unreported: Drops
    file_bytes: int

    @property
    def total_count(self) -> int:
        return sum(self.count.values())

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


@dataclass(slots=True)
class Backoff:
    """Capped exponential delays with jitter for the sender's retries (pure: no sleeping).

    The n-th delay lies in ``[d/2, d]`` with ``d = min(cap, base * factor**n)``: never shorter
    than half the nominal step, and spread so a thousand agents do not retry in step.
    """

    base: float = 1.0
    cap: float = 60.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap or self.factor < 1:
            raise ValueError("backoff needs 0 < base <= cap and factor >= 1")

    def next_delay(self) -> float:
        """The delay before the next attempt, in seconds; counts one more failure."""
        nominal = min(self.cap, self.base * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        return nominal / 2 + self.rng.uniform(0, nominal / 2)

    def reset(self) -> None:
        """After a success: start again from ``base``."""
        self.attempts = 0
