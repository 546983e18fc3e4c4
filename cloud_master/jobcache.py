"""The master's job cache: jobs published and the returns that came back, in SQLite (WAL)."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Job", "JobCache", "JobRecord", "Return", "SqliteJobCache", "decode_value",
           "encode_value"]


@dataclass(frozen=True, slots=True)
class Job:
    """A published job: what ran, on which target, and which minions were expected."""

    jid: str
    fun: str
    arg: list[Any]
    tgt: str | list[str]
    tgt_type: str
    user: str
    minions: list[str]
    started: float


@dataclass(frozen=True, slots=True)
class Return:
    """One minion's answer to a job."""

    jid: str
    minion_id: str
    fun: str
    ret: Any
    retcode: int
    success: bool
    received: float


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job and the returns received so far, by minion id."""

    job: Job
    returns: dict[str, Return] = field(default_factory=dict)

    @property
    def missing(self) -> list[str]:
        """Expected minions that have not returned yet."""
        return [m for m in self.job.minions if m not in self.returns]


class JobCache(Protocol):
    """Where the master keeps jobs and returns (SQLite here, PostgreSQL later)."""

    def save_job(self, job: Job) -> None: ...

    def save_return(self, ret: Return) -> bool: ...

    def save_returns(self, returns: Sequence[Return]) -> list[bool]: ...

    def get_job(self, jid: str) -> JobRecord | None: ...

    def list_jobs(self, limit: int = 50, since: float | None = None) -> list[Job]: ...

    def expire(self, older_than_hours: float, now: float | None = None) -> int: ...

    def close(self) -> None: ...


# -- values: JSON that keeps what msgpack can carry (bytes, non-string keys) -----------

_TAGS = ("$bytes", "$dict", "$pairs")


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            return {"$pairs": [[_encode(k), _encode(v)] for k, v in value.items()]}
        encoded = {key: _encode(item) for key, item in value.items()}
        # A real dict that looks like one of our tags is wrapped so it decodes as itself.
        return {"$dict": encoded} if len(value) == 1 and next(iter(value)) in _TAGS else encoded
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        tag, inner = next(iter(value.items()))
        if tag == "$bytes":
            return base64.b64decode(inner)
        if tag == "$dict":
            return {key: _decode(item) for key, item in inner.items()}
        if tag == "$pairs":
            return {_freeze(_decode(k)): _decode(v) for k, v in inner}
    return {key: _decode(item) for key, item in value.items()}


def _freeze(key: Any) -> Any:
    return tuple(_freeze(k) for k in key) if isinstance(key, list) else key


def encode_value(value: Any) -> str:
    """JSON text for a return value; bytes and non-string keys survive the round trip."""
    return json.dumps(_encode(value), ensure_ascii=False, separators=(",", ":"))


def decode_value(text: str) -> Any:
    """The value :func:`encode_value` stored."""
    return _decode(json.loads(text))


# -- SQLite ---------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    jid TEXT PRIMARY KEY, fun TEXT NOT NULL, arg TEXT NOT NULL, tgt TEXT NOT NULL,
    tgt_type TEXT NOT NULL, user TEXT NOT NULL, minions TEXT NOT NULL, started REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_started ON jobs (started);
CREATE TABLE IF NOT EXISTS returns (
    jid TEXT NOT NULL, minion_id TEXT NOT NULL, fun TEXT NOT NULL, ret TEXT NOT NULL,
    retcode INTEGER NOT NULL, success INTEGER NOT NULL, received REAL NOT NULL,
    PRIMARY KEY (jid, minion_id)
);
CREATE INDEX IF NOT EXISTS returns_by_received ON returns (received);
"""
_JOB_COLUMNS = "jid, fun, arg, tgt, tgt_type, user, minions, started"


def _job_from_row(row: tuple[Any, ...]) -> Job:
    jid, fun, arg, tgt, tgt_type, user, minions, started = row
    return Job(jid, fun, decode_value(arg), json.loads(tgt), tgt_type, user,
               json.loads(minions), started)


class SqliteJobCache:
    """A :class:`JobCache` in one SQLite file; the daemon writes while the CLI reads.

    One connection guarded by a lock, so it is safe to share between threads.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Returns may hold secrets: create the file private before SQLite opens it.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a return is acknowledged to the minion once saved, so it must survive power loss.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        with self._transaction() as db:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the connection; the object is unusable afterwards."""
        with self._lock:
            self._db.close()

    def save_job(self, job: Job) -> None:
        """Store (or replace) a job."""
        row = (job.jid, job.fun, encode_value(list(job.arg)), json.dumps(job.tgt),
               job.tgt_type, job.user, json.dumps(list(job.minions)), job.started)
        with self._transaction() as db:
            db.execute(f"INSERT OR REPLACE INTO jobs ({_JOB_COLUMNS}) VALUES "
                       "(?, ?, ?, ?, ?, ?, ?, ?)", row)

    def save_return(self, ret: Return) -> bool:
        """Store a return; False when (jid, minion) was already stored (a resend)."""
        return self.save_returns([ret])[0]

    def save_returns(self, returns: Sequence[Return]) -> list[bool]:
        """Store many returns in one transaction (one fsync); per return, False for a resend."""
        stored = []
        with self._transaction() as db:
            for ret in returns:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO returns (jid, minion_id, fun, ret, retcode, success, "
                    "received) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (ret.jid, ret.minion_id, ret.fun, encode_value(ret.ret), int(ret.retcode),
                     int(bool(ret.success)), ret.received))
                stored.append(cursor.rowcount == 1)
        return stored

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def get_returns(self, jid: str) -> dict[str, Return]:
        """Returns received for ``jid``, by minion id."""
        rows = self._query("SELECT jid, minion_id, fun, ret, retcode, success, received "
                           "FROM returns WHERE jid = ? ORDER BY received", (jid,))
        return {
            row[1]: Return(row[0], row[1], row[2], decode_value(row[3]), row[4],
                           bool(row[5]), row[6])
            for row in rows
        }

    def get_job(self, jid: str) -> JobRecord | None:
        """The job with its returns, or None when no such job is cached."""
        rows = self._query(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE jid = ?", (jid,))
        if not rows:
            return None
        return JobRecord(_job_from_row(rows[0]), self.get_returns(jid))

    def list_jobs(self, limit: int = 50, since: float | None = None) -> list[Job]:
        """The newest jobs first, optionally only those started at or after ``since``."""
        rows = self._query(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE started >= ? "
            "ORDER BY started DESC, jid DESC LIMIT ?",
            (float("-inf") if since is None else since, limit),
        )
        return [_job_from_row(row) for row in rows]

    def expire(self, older_than_hours: float, now: float | None = None) -> int:
        """Drop jobs (and returns) older than the horizon; the number of jobs dropped."""
        cutoff = (time.time() if now is None else now) - older_than_hours * 3600
        with self._transaction() as db:
            db.execute("DELETE FROM returns WHERE jid IN "
                       "(SELECT jid FROM jobs WHERE started < ?)", (cutoff,))
            # Returns for jobs this master never recorded expire by their own age.
            db.execute("DELETE FROM returns WHERE received < ? AND jid NOT IN "
                       "(SELECT jid FROM jobs)", (cutoff,))
            return db.execute("DELETE FROM jobs WHERE started < ?", (cutoff,)).rowcount
