"""The telemetry store in PostgreSQL (psycopg 3), for fleets: same layout as the SQLite store.

A batch is COPYed (binary) into a temporary staging table and moved with one
``INSERT … SELECT … ON CONFLICT DO NOTHING``, so ingest is idempotent at COPY speed; the
newest sample per series is upserted into ``telemetry_latest`` from the same staging rows.
Rows are inserted in key order so two masters ingesting overlapping batches cannot deadlock.
A BRIN index on ``ts`` keeps retention cheap (samples arrive roughly in time order).

A lost connection (server restart, network) raises :class:`StoreUnavailable`; the next call
reconnects. The caller retries the failed batch, which idempotent ingest makes safe.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO, TypeVar

import psycopg
import structlog

from cloud_master.telemetry.export import writer_for
from cloud_master.telemetry.model import (
    IngestResult,
    Sample,
    StoreUnavailable,
    TelemetryError,
    merge_by_time,
    time_bounds,
)

__all__ = ["PostgresTelemetryStore"]

log = structlog.get_logger(__name__)
T = TypeVar("T")

# COLLATE "C": byte order, as SQLite sorts, and cheaper comparisons than a locale's.
_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS telemetry_series (
        sid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        minion_id TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL,
        UNIQUE (minion_id, name))""",
    """CREATE TABLE IF NOT EXISTS telemetry_samples (
        sid BIGINT NOT NULL, ts DOUBLE PRECISION NOT NULL, uid TEXT COLLATE "C" NOT NULL,
        value DOUBLE PRECISION, text TEXT, unit TEXT,
        PRIMARY KEY (sid, ts, uid))""",
    "CREATE INDEX IF NOT EXISTS telemetry_samples_ts ON telemetry_samples USING brin (ts)",
    """CREATE TABLE IF NOT EXISTS telemetry_latest (
        sid BIGINT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, uid TEXT COLLATE "C" NOT NULL,
        value DOUBLE PRECISION, text TEXT, unit TEXT)""",
]
_STAGING = """CREATE TEMP TABLE IF NOT EXISTS telemetry_staging (
    sid BIGINT, ts DOUBLE PRECISION, uid TEXT COLLATE "C", value DOUBLE PRECISION,
    text TEXT, unit TEXT) ON COMMIT DELETE ROWS"""
_COPY = "COPY telemetry_staging (sid, ts, uid, value, text, unit) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ["int8", "float8", "text", "float8", "text", "text"]
_MOVE = """INSERT INTO telemetry_samples (sid, ts, uid, value, text, unit)
    SELECT sid, ts, uid, value, text, unit FROM telemetry_staging ORDER BY sid, ts, uid
    ON CONFLICT DO NOTHING"""
_LATEST = """INSERT INTO telemetry_latest (sid, ts, uid, value, text, unit)
    SELECT DISTINCT ON (sid) sid, ts, uid, value, text, unit FROM telemetry_staging
    ORDER BY sid, ts DESC, uid DESC
    ON CONFLICT (sid) DO UPDATE SET ts = EXCLUDED.ts, uid = EXCLUDED.uid,
        value = EXCLUDED.value, text = EXCLUDED.text, unit = EXCLUDED.unit
    WHERE (EXCLUDED.ts, EXCLUDED.uid) > (telemetry_latest.ts, telemetry_latest.uid)"""
_NEW_SERIES = """INSERT INTO telemetry_series (minion_id, name)
    SELECT * FROM unnest(%s::text[], %s::text[]) ORDER BY 1, 2 ON CONFLICT DO NOTHING"""
_FIND_SERIES = """SELECT s.sid, s.minion_id, s.name FROM telemetry_series s
    JOIN unnest(%s::text[], %s::text[]) AS k (minion_id, name)
    ON s.minion_id = k.minion_id AND s.name = k.name"""
_SCHEMA_LOCK = 0x74656C65  # any constant: serialises schema creation between masters


def _filters(minion_ids: Sequence[str] | None, series: Sequence[str] | None
             ) -> tuple[str, list[Any]]:
    sql, args = "", []
    if minion_ids is not None:
        sql += " AND s.minion_id = ANY(%s)"
        args.append(list(minion_ids))
    if series is not None:
        sql += " AND s.name = ANY(%s)"
        args.append(list(series))
    return sql, args


class PostgresTelemetryStore:
    """A :class:`~cloud_master.telemetry.model.TelemetryStore` on a PostgreSQL server."""

    def __init__(self, dsn: str, *, connect_timeout: float = 5.0) -> None:
        self._dsn = dsn
        self._timeout = connect_timeout
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._sids: dict[tuple[str, str], int] = {}
        self._session(self._create_schema)

    # -- connections ------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self._dsn, autocommit=True,
                                   connect_timeout=max(1, round(self._timeout)))
        except psycopg.OperationalError as err:
            raise StoreUnavailable(f"cannot reach the telemetry database: {err}".strip()) from err

    def _session(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``work`` on the writer connection, reconnecting first if it was lost."""
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
                self._conn.execute(_STAGING)
            conn = self._conn
            try:
                return work(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError) as err:
                # Deadlocks and serialisation failures leave the connection usable.
                if conn.broken or conn.closed:
                    conn.close()
                    self._conn = None
                log.warning("telemetry.db_error", store="postgres", error=str(err).strip())
                raise StoreUnavailable(f"telemetry database error, retry: {err}".strip()) from err
            except psycopg.Error as err:
                raise TelemetryError(f"telemetry database refused the request: {err}".strip()) from err

    @contextmanager
    def _reader(self) -> Iterator[psycopg.Connection[Any]]:
        conn = self._connect()
        try:
            yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as err:
            raise StoreUnavailable(f"telemetry database error, retry: {err}".strip()) from err
        finally:
            conn.close()

    @staticmethod
    def _create_schema(conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in _SCHEMA:
                conn.execute(statement)

    # -- ingest -----------------------------------------------------------------------

    def ingest(self, samples: Iterable[Sample]) -> IngestResult:
        """Store a batch in one transaction; samples already stored count as duplicates."""
        batch = samples if isinstance(samples, list) else list(samples)
        if not batch:
            return IngestResult(0, 0)
        created: dict[tuple[str, str], int] = {}

        def work(conn: psycopg.Connection[Any]) -> int:
            created.clear()
            with conn.transaction(), conn.cursor() as cur:
                sids = self._resolve(cur, {(s.minion_id, s.series) for s in batch}, created)
                with cur.copy(_COPY) as copy:
                    copy.set_types(_COPY_TYPES)
                    for s in batch:
                        copy.write_row((sids[s.minion_id, s.series], s.ts, s.uid, s.value,
                                        s.text, s.unit))
                cur.execute(_MOVE)
                stored = cur.rowcount
                cur.execute(_LATEST)
                return stored

        stored = self._session(work)
        self._sids.update(created)  # only after the commit
        return IngestResult(stored, len(batch) - stored)

    def _resolve(self, cur: psycopg.Cursor[Any], keys: set[tuple[str, str]],
                 created: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
        found = {key: self._sids[key] for key in keys if key in self._sids}
        missing = sorted(keys - found.keys())
        if missing:
            columns = [[m for m, _ in missing], [n for _, n in missing]]
            cur.execute(_NEW_SERIES, columns)
            for sid, minion_id, name in cur.execute(_FIND_SERIES, columns).fetchall():
                created[minion_id, name] = found[minion_id, name] = sid
        return found

    # -- queries ----------------------------------------------------------------------

    def latest(self, minion_ids: Sequence[str] | None = None,
               series: Sequence[str] | None = None) -> list[Sample]:
        """The newest sample of every series, in (minion_id, series) order."""
        where, args = _filters(minion_ids, series)
        sql = ("SELECT s.minion_id, l.uid, l.ts, s.name, l.value, l.text, l.unit "
               "FROM telemetry_series s JOIN telemetry_latest l ON l.sid = s.sid "
               f"WHERE true{where} ORDER BY s.minion_id, s.name")
        return self._session(lambda conn: [Sample(*row) for row in conn.execute(sql, args)])

    def query(self, minion_id: str, series: Sequence[str], since: float | None = None,
              until: float | None = None, limit: int | None = None) -> Iterator[Sample]:
        """One vehicle's samples of ``series`` in [since, until), streamed in (ts, series) order."""
        low, high = time_bounds(since, until)
        with self._reader() as conn, conn.transaction():
            named = conn.execute("SELECT sid, name FROM telemetry_series s WHERE s.minion_id = %s "
                                 "AND s.name = ANY(%s) ORDER BY name",
                                 (minion_id, sorted(set(series)))).fetchall()
            streams = [self._series_rows(conn, minion_id, sid, name, low, high)
                       for sid, name in named]
            try:
                yield from itertools.islice(merge_by_time(streams), limit)
            finally:
                for stream in streams:  # close their cursors while the transaction is open
                    stream.close()

    @staticmethod
    def _series_rows(conn: psycopg.Connection[Any], minion_id: str, sid: int, name: str,
                     low: float, high: float) -> Generator[Sample, None, None]:
        with conn.cursor(name=f"series_{sid}") as cur:
            cur.itersize = 2000
            cur.execute("SELECT uid, ts, value, text, unit FROM telemetry_samples "
                        "WHERE sid = %s AND ts >= %s AND ts < %s ORDER BY ts, uid",
                        (sid, low, high))
            for uid, ts, value, text, unit in cur:
                yield Sample(minion_id, uid, ts, name, value, text, unit)

    def scan(self, minion_ids: Sequence[str] | None = None, series: Sequence[str] | None = None,
             since: float | None = None, until: float | None = None) -> Iterator[Sample]:
        """Every matching sample, streamed (server-side cursor) in (minion_id, series, ts) order."""
        low, high = time_bounds(since, until)
        where, args = _filters(minion_ids, series)
        sql = ("SELECT s.minion_id, x.uid, x.ts, s.name, x.value, x.text, x.unit "
               "FROM telemetry_series s JOIN telemetry_samples x ON x.sid = s.sid "
               f"WHERE x.ts >= %s AND x.ts < %s{where} ORDER BY s.minion_id, s.name, x.ts, x.uid")
        with self._reader() as conn, conn.transaction(), conn.cursor(name="scan") as cur:
            cur.itersize = 5000
            cur.execute(sql, [low, high, *args])
            for row in cur:
                yield Sample(*row)

    def export(self, out: TextIO, fmt: str = "csv", *, minion_ids: Sequence[str] | None = None,
               series: Sequence[str] | None = None, since: float | None = None,
               until: float | None = None) -> int:
        """Write matching samples to ``out`` as csv or jsonl, streamed; the number written."""
        write = writer_for(fmt)
        return write(self.scan(minion_ids, series, since, until), out)

    # -- retention --------------------------------------------------------------------

    def expire(self, older_than_s: float, now: float | None = None) -> int:
        """Delete samples older than the horizon; how many."""
        cutoff = (time.time() if now is None else now) - older_than_s

        def work(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                deleted = conn.execute("DELETE FROM telemetry_samples WHERE ts < %s",
                                       (cutoff,)).rowcount
                conn.execute("DELETE FROM telemetry_latest WHERE ts < %s", (cutoff,))
                return deleted

        deleted = self._session(work)
        log.info("telemetry.expired", store="postgres", deleted=deleted, cutoff=cutoff)
        return deleted

    def count(self) -> int:
        """Samples stored (a full count: for tests and operators, not hot paths)."""
        row = self._session(lambda conn: conn.execute(
            "SELECT count(*) FROM telemetry_samples").fetchone())
        return int(row[0]) if row else 0

    def close(self) -> None:
        """Close the connection; the store is unusable afterwards."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
