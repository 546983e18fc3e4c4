"""Telemetry values, their validation from the wire, the store Protocol and its errors.

Errors::

    TelemetryError
    ├── InvalidSample(TelemetryError, ValueError)     a sample from an agent is malformed
    ├── UnsupportedStore(TelemetryError, ValueError)  a store URL names no backend we have
    ├── UnknownFormat(TelemetryError, ValueError)     an export format other than csv, jsonl
    └── StoreUnavailable(TelemetryError, ConnectionError)
                                                      the database is unreachable; retry later
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TextIO

__all__ = ["IngestResult", "InvalidSample", "Sample", "StoreUnavailable", "TelemetryError",
           "TelemetryStore", "UnknownFormat", "UnsupportedStore", "merge_by_time", "sample_from_wire",
           "samples_from_wire", "time_bounds"]

MAX_ID = 255
MAX_UID = 64
MAX_SERIES = 200
MAX_UNIT = 32
MAX_TEXT = 4096


class TelemetryError(Exception):
    """Root of the telemetry store's errors."""


class InvalidSample(TelemetryError, ValueError):
    """A sample an agent sent is malformed; it can never be stored, so it is not retried."""


class UnsupportedStore(TelemetryError, ValueError):
    """A store URL that is neither ``sqlite:///…`` nor ``postgresql://…``."""


class UnknownFormat(TelemetryError, ValueError):
    """An export format we do not write."""


class StoreUnavailable(TelemetryError, ConnectionError):
    """The database cannot be reached or dropped the connection; the caller retries the batch."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one series on one vehicle; ``uid`` is the agent's id for it."""

    minion_id: str
    uid: str
    ts: float
    series: str
    value: float | None = None
    text: str | None = None
    unit: str | None = None


class IngestResult(NamedTuple):
    """What one ingest did: samples newly stored, and resent ones already there."""

    stored: int
    duplicates: int


class TelemetryStore(Protocol):
    """Where the master keeps telemetry: SQLite by default, PostgreSQL for fleets.

    Times are unix seconds; ``since`` is inclusive and ``until`` exclusive.
    """

    def ingest(self, samples: Iterable[Sample]) -> IngestResult:
        """Store a batch in one transaction; a sample already stored is counted, not stored."""
        ...

    def latest(self, minion_ids: Sequence[str] | None = None,
               series: Sequence[str] | None = None) -> list[Sample]:
        """The newest sample of every series, by (minion_id, series)."""
        ...

    def query(self, minion_id: str, series: Sequence[str], since: float | None = None,
              until: float | None = None, limit: int | None = None) -> Iterator[Sample]:
        """One vehicle's samples of the given series, streamed in (ts, series) order."""
        ...

    def scan(self, minion_ids: Sequence[str] | None = None, series: Sequence[str] | None = None,
             since: float | None = None, until: float | None = None) -> Iterator[Sample]:
        """Every matching sample, streamed in (minion_id, series, ts) order."""
        ...

    def export(self, out: TextIO, fmt: str = "csv", *, minion_ids: Sequence[str] | None = None,
               series: Sequence[str] | None = None, since: float | None = None,
               until: float | None = None) -> int:
        """Write matching samples as csv or jsonl, streamed; the number written."""
        ...

    def expire(self, older_than_s: float, now: float | None = None) -> int:
        """Delete samples older than the horizon; how many."""
        ...

    def count(self) -> int:
        """Samples stored (a full count: for operators and tests, not hot paths)."""
        ...

    def close(self) -> None:
        """Release the connection(s)."""
        ...


# -- from the wire --------------------------------------------------------------------

def _text(item: Mapping[str, Any], key: str, limit: int, required: bool) -> str | None:
    value = item.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise InvalidSample(f"sample {key!r} must be a non-empty string, got {value!r:.80}")
    if len(value) > limit or "\x00" in value:
        raise InvalidSample(f"sample {key!r} is longer than {limit} or holds a NUL: {value!r:.80}")
    return value


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidSample(f"sample {key!r} must be a finite number, got {value!r:.80}")
    return float(value)


def sample_from_wire(minion_id: str, item: Any) -> Sample:
    """A :class:`Sample` from one decoded wire map; ``minion_id`` is the sender's authenticated id.

    The map holds ``uid``, ``ts``, ``series`` and optionally ``value`` (a number; a string
    value is kept as ``text``), ``text`` and ``unit``.
    """
    if not isinstance(item, Mapping):
        raise InvalidSample(f"a sample must be a map, got {type(item).__name__}")
    if not minion_id or len(minion_id) > MAX_ID or "\x00" in minion_id:
        raise InvalidSample(f"bad minion id {minion_id!r:.80}")
    value = item.get("value")
    text = _text(item, "text", MAX_TEXT, False)
    if isinstance(value, str):
        text, value = (text if text is not None else _text(item, "value", MAX_TEXT, True)), None
    return Sample(
        minion_id=minion_id,
        uid=_text(item, "uid", MAX_UID, True) or "",
        ts=_number(item.get("ts"), "ts"),
        series=_text(item, "series", MAX_SERIES, True) or "",
        value=None if value is None else _number(value, "value"),
        text=text,
        unit=_text(item, "unit", MAX_UNIT, False),
    )


def samples_from_wire(minion_id: str, items: Iterable[Any]) -> tuple[list[Sample], int]:
    """The valid samples of a batch and the number rejected (ack those too: they never improve)."""
    samples: list[Sample] = []
    rejected = 0
    for item in items:
        try:
            samples.append(sample_from_wire(minion_id, item))
        except InvalidSample:
            rejected += 1
    return samples, rejected


def merge_by_time(streams: Iterable[Iterator[Sample]]) -> Iterator[Sample]:
    """Merge per-series streams, each in ts order, into one (ts, series) ordered stream."""
    return heapq.merge(*streams, key=lambda sample: (sample.ts, sample.series))


def time_bounds(since: float | None, until: float | None) -> tuple[float, float]:
    """``since``/``until`` with None meaning unbounded."""
    return (-math.inf if since is None else since, math.inf if until is None else until)
