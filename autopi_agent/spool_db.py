"""SQLite plumbing of the agent's spool: schema, opening, per-kind totals, oldest-first drops."""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from autopi_agent.spool_types import KINDS, Drops

__all__ = ["Counters", "apply", "compact", "connect", "drop_oldest", "drops_from_meta", "files",
           "head_created", "meta", "quarantine"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY, prio INTEGER NOT NULL, created REAL NOT NULL,
    size INTEGER NOT NULL, payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS items_by_prio ON items (prio, seq);
CREATE TABLE IF NOT EXISTS totals (
    prio INTEGER PRIMARY KEY, count INTEGER NOT NULL, bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)
"""


@dataclass(slots=True)
class Counters:
    """Per-priority deltas of one transaction, applied to ``totals`` before commit."""

    count: list[int] = field(default_factory=lambda: [0] * len(KINDS))
    bytes: list[int] = field(default_factory=lambda: [0] * len(KINDS))

    def add(self, prio: int, count: int, size: int) -> None:
        self.count[prio] += count
        self.bytes[prio] += size


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) a spool file in WAL mode with its schema."""
    # Returns may carry secrets: create the file private before SQLite opens it.
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    db = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
    try:
        # Only takes effect on a new, empty file (so before WAL mode writes the header):
        # it lets compact() give a drained spool's pages back to the SD card.
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise sqlite3.DatabaseError(f"cannot use WAL mode (got {mode!r})")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("BEGIN IMMEDIATE")
        for statement in filter(str.strip, _SCHEMA.split(";")):
            db.execute(statement)
        db.execute("COMMIT")
    except BaseException:
        db.close()
        raise
    return db


def files(path: Path) -> list[Path]:
    """The database file and its WAL and shared-memory companions."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def quarantine(path: Path) -> Path:
    """Move a damaged spool (and companions) aside for inspection; its new name."""
    target = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    for source in files(path):
        if source.exists():
            os.replace(source, target.with_name(target.name + source.name[len(path.name):]))
    return target


def meta(db: sqlite3.Connection, key: str) -> int:
    """An integer from the meta table (0 when absent)."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return int(row[0]) if row else 0


def drops_from_meta(db: sqlite3.Connection, prefix: str) -> Drops:
    """Drop counters stored as ``<prefix>.<kind>`` meta keys."""
    return Drops.of(*(meta(db, f"{prefix}.{kind}") for kind in KINDS))


def head_created(db: sqlite3.Connection, prio: int) -> float | None:
    """When the next item of a priority to be sent was put (None when there is none)."""
    row = db.execute("SELECT created FROM items WHERE prio = ? ORDER BY seq LIMIT 1",
                     (prio,)).fetchone()
    return float(row[0]) if row else None


def apply(db: sqlite3.Connection, counters: Counters) -> None:
    """Add a transaction's deltas to the per-kind totals (kept in the file, so always exact)."""
    for prio, (count, size) in enumerate(zip(counters.count, counters.bytes, strict=True)):
        if count or size:
            db.execute("INSERT INTO totals VALUES (?, ?, ?) ON CONFLICT (prio) DO UPDATE SET "
                       "count = count + excluded.count, bytes = bytes + excluded.bytes",
                       (prio, count, size))


def drop_oldest(db: sqlite3.Connection, prio: int, excess: int) -> tuple[int, int]:
    """Delete the oldest items of one priority until ``excess`` bytes are freed."""
    count = freed = 0
    last = None
    cursor = db.execute("SELECT seq, size FROM items WHERE prio = ? ORDER BY seq", (prio,))
    try:
        while freed < excess and (rows := cursor.fetchmany(256)):
            for seq, size in rows:
                count, freed, last = count + 1, freed + size, seq
                if freed >= excess:
                    break
    finally:
        cursor.close()
    if last is not None:
        db.execute("DELETE FROM items WHERE prio = ? AND seq <= ?", (prio, last))
        counters = Counters()
        counters.add(prio, -count, -freed)
        apply(db, counters)
    return count, freed


def compact(db: sqlite3.Connection, keep_free_pages: int = 256) -> int:
    """Return free pages beyond ``keep_free_pages`` to the file system; pages released."""
    (free,) = db.execute("PRAGMA freelist_count").fetchone()
    if free <= keep_free_pages:
        return 0
    # executescript steps the pragma to completion; execute() would free a single page.
    db.executescript(f"PRAGMA incremental_vacuum({int(free - keep_free_pages)});")
    return int(free - keep_free_pages)
