"""The telemetry store in one SQLite file (WAL): the master's default, no server to run.

Layout: ``telemetry_series`` maps (minion_id, series name) to a small integer ``sid``;
``telemetry_samples`` is clustered on (sid, ts, uid) (WITHOUT ROWID), so one vehicle's series
over a time range is one contiguous range scan and a resent sample hits the same key;
``telemetry_latest`` holds the newest sample per sid, upserted on ingest, so "latest of every
vehicle" reads one small table in (minion_id, series) order instead of scanning samples.

One writer connection behind a lock (batches go in one transaction with ``executemany``);
every query opens its own read-only connection, so a long export never blocks ingest.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import structlog

from cloud_master.telemetry.export import writer_for
from cloud_master.telemetry.model import IngestResult, Sample, merge_by_time, time_bounds

__all__ = ["SqliteTelemetryStore"]

log = structlog.get_logger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS telemetry_series (
    sid INTEGER PRIMARY KEY, minion_id TEXT NOT NULL, name TEXT NOT NULL,
    UNIQUE (minion_id, name)
);
CREATE TABLE IF NOT EXISTS telemetry_samples (
    sid INTEGER NOT NULL, ts REAL NOT NULL, uid TEXT NOT NULL,
    value REAL, text TEXT, unit TEXT,
    PRIMARY KEY (sid, ts, uid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS telemetry_latest (
    sid INTEGER PRIMARY KEY, ts REAL NOT NULL, uid TEXT NOT NULL,
    value REAL, text TEXT, unit TEXT
)
"""
_INSERT = ("INSERT OR IGNORE INTO telemetry_samples (sid, ts, uid, value, text, unit) "
           "VALUES (?, ?, ?, ?, ?, ?)")
# (ts, uid) decides ties, so the latest row does not depend on the order batches arrive in.
_UPSERT_LATEST = (
    "INSERT INTO telemetry_latest (sid, ts, uid, value, text, unit) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (sid) DO UPDATE SET ts = excluded.ts, uid = excluded.uid, "
    "value = excluded.value, text = excluded.text, unit = excluded.unit "
    "WHERE (excluded.ts, excluded.uid) > (telemetry_latest.ts, telemetry_latest.uid)")
_EXPIRE_CHUNK = 200

Row = tuple[int, float, str, float | None, str | None, str | None]


def _newest(rows: Iterable[Row]) -> list[Row]:
    """The newest row of each sid in a batch, by (ts, uid)."""
    best: dict[int, Row] = {}
    for row in rows:
        current = best.get(row[0])
        if current is None or (row[1], row[2]) > (current[1], current[2]):
            best[row[0]] = row
    return list(best.values())


def _in(column: str, values: Sequence[str] | None) -> tuple[str, list[str]]:
    if values is None:
        return "", []
    return f" AND {column} IN ({','.join('?' * len(values))})", list(values)


class SqliteTelemetryStore:
    """A :class:`~cloud_master.telemetry.model.TelemetryStore` in one SQLite file."""

    def __init__(self, path: Path | str, *, synchronous: str = "FULL", cache_mib: int = 64) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be 'FULL' (survives power loss) or 'NORMAL'")
        if str(path) in ("", ":memory:"):
            raise ValueError("the SQLite telemetry store needs a file: readers open it separately")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Positions and battery levels are personal data: the file is private from the start.
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        self._lock = threading.Lock()
        self._sids: dict[tuple[str, str], int] = {}
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL by default: the master acks a batch once stored, and the agent then forgets it.
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=30000")
        # Ingest appends at one B-tree position per series; keep those pages cached.
        self._db.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")
        with self._write() as db:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30,
                             isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            yield db
        finally:
            db.close()

    # -- ingest -----------------------------------------------------------------------

    def ingest(self, samples: Iterable[Sample]) -> IngestResult:
        """Store a batch in one transaction; samples already stored count as duplicates."""
        batch = samples if isinstance(samples, list) else list(samples)
        if not batch:
            return IngestResult(0, 0)
        with self._write() as db:
            sids, created = self._resolve(db, {(s.minion_id, s.series) for s in batch})
            rows: list[Row] = [(sids[s.minion_id, s.series], s.ts, s.uid, s.value, s.text, s.unit)
                               for s in batch]
            before = db.total_changes
            db.executemany(_INSERT, rows)
            stored = db.total_changes - before
            db.executemany(_UPSERT_LATEST, _newest(rows))
        # Only after the commit: a rolled-back series row must not stay in the cache.
        self._sids.update(created)
        return IngestResult(stored, len(batch) - stored)

    def _resolve(self, db: sqlite3.Connection, keys: set[tuple[str, str]]
                 ) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        """Sids for (minion_id, series) keys: all of them, and those not cached before."""
        found = {key: self._sids[key] for key in keys if key in self._sids}
        created: dict[tuple[str, str], int] = {}
        for key in keys - found.keys():
            db.execute("INSERT OR IGNORE INTO telemetry_series (minion_id, name) VALUES (?, ?)",
                       key)
            (sid,) = db.execute("SELECT sid FROM telemetry_series WHERE minion_id = ? AND name = ?",
                                key).fetchone()
            created[key] = found[key] = sid
        return found, created

    # -- queries ----------------------------------------------------------------------

    def latest(self, minion_ids: Sequence[str] | None = None,
               series: Sequence[str] | None = None) -> list[Sample]:
        """The newest sample of every series, in (minion_id, series) order."""
        by_minion, minion_args = _in("s.minion_id", minion_ids)
        by_series, series_args = _in("s.name", series)
        sql = ("SELECT s.minion_id, l.uid, l.ts, s.name, l.value, l.text, l.unit "
               "FROM telemetry_series s JOIN telemetry_latest l ON l.sid = s.sid "
               f"WHERE 1{by_minion}{by_series} ORDER BY s.minion_id, s.name")
        with self._reader() as db:
            return [Sample(*row) for row in db.execute(sql, [*minion_args, *series_args])]

    def query(self, minion_id: str, series: Sequence[str], since: float | None = None,
              until: float | None = None, limit: int | None = None) -> Iterator[Sample]:
        """One vehicle's samples of ``series`` in [since, until), streamed in (ts, series) order."""
        low, high = time_bounds(since, until)
        with self._reader() as db:
            by_series, args = _in("name", sorted(set(series)))
            named = db.execute(f"SELECT sid, name FROM telemetry_series WHERE minion_id = ?"
                               f"{by_series}", [minion_id, *args]).fetchall()
            streams = [self._series_rows(db, minion_id, sid, name, low, high) for sid, name in named]
            try:
                yield from itertools.islice(merge_by_time(streams), limit)
            finally:
                for stream in streams:
                    stream.close()

    @staticmethod
    def _series_rows(db: sqlite3.Connection, minion_id: str, sid: int, name: str, low: float,
                     high: float) -> Generator[Sample, None, None]:
        cursor = db.execute("SELECT uid, ts, value, text, unit FROM telemetry_samples "
                            "WHERE sid = ? AND ts >= ? AND ts < ? ORDER BY ts, uid",
                            (sid, low, high))
        for uid, ts, value, text, unit in cursor:
            yield Sample(minion_id, uid, ts, name, value, text, unit)

    def scan(self, minion_ids: Sequence[str] | None = None, series: Sequence[str] | None = None,
             since: float | None = None, until: float | None = None) -> Iterator[Sample]:
        """Every matching sample, streamed in (minion_id, series, ts) order."""
        low, high = time_bounds(since, until)
        by_minion, minion_args = _in("s.minion_id", minion_ids)
        by_series, series_args = _in("s.name", series)
        sql = ("SELECT s.minion_id, x.uid, x.ts, s.name, x.value, x.text, x.unit "
               "FROM telemetry_series s CROSS JOIN telemetry_samples x ON x.sid = s.sid "
               f"WHERE x.ts >= ? AND x.ts < ?{by_minion}{by_series} "
               "ORDER BY s.minion_id, s.name, x.ts, x.uid")
        with self._reader() as db:
            for row in db.execute(sql, [low, high, *minion_args, *series_args]):
                yield Sample(*row)

    def export(self, out: TextIO, fmt: str = "csv", *, minion_ids: Sequence[str] | None = None,
               series: Sequence[str] | None = None, since: float | None = None,
               until: float | None = None) -> int:
        """Write matching samples to ``out`` as csv or jsonl, streamed; the number written."""
        write = writer_for(fmt)
        return write(self.scan(minion_ids, series, since, until), out)

    # -- retention --------------------------------------------------------------------

    def expire(self, older_than_s: float, now: float | None = None) -> int:
        """Delete samples older than the horizon, a few series per transaction; how many."""
        cutoff = (time.time() if now is None else now) - older_than_s
        with self._reader() as db:
            sids = [sid for (sid,) in db.execute("SELECT sid FROM telemetry_series ORDER BY sid")]
        deleted = 0
        # Short transactions per chunk of series, so ingest is never held off for long.
        for start in range(0, len(sids), _EXPIRE_CHUNK):
            with self._write() as db:
                for sid in sids[start:start + _EXPIRE_CHUNK]:
                    deleted += db.execute("DELETE FROM telemetry_samples WHERE sid = ? AND ts < ?",
                                          (sid, cutoff)).rowcount
        with self._write() as db:
            db.execute("DELETE FROM telemetry_latest WHERE ts < ?", (cutoff,))
        log.info("telemetry.expired", store="sqlite", deleted=deleted, cutoff=cutoff)
        return deleted

    def count(self) -> int:
        """Samples stored (a full count: for tests and operators, not hot paths)."""
        with self._reader() as db:
            row: Any = db.execute("SELECT count(*) FROM telemetry_samples").fetchone()
            return int(row[0])

    def close(self) -> None:
        """Close the writer connection; the store is unusable afterwards."""
        with self._lock:
            self._db.close()
