"""The agent's durable outbox: samples, job returns and events wait in SQLite until the master acks.

Policy (DESIGN R1, R2, R4), in one place:

- Every item is written before it is sent and deleted only by :meth:`Spool.ack`, which the
  sender calls after the master acknowledged the batch. The master's ingest is idempotent
  on the item id, so a resend after a crash is harmless.
- Durability per kind. The file is in WAL mode, so no crash or power cut corrupts it. A
  ``put`` that returned survives a SIGKILL of the process for every kind. Returns and events
  are committed with ``synchronous=FULL`` (fsync per put), so they also survive a power cut.
  Telemetry is committed with ``NORMAL`` (no fsync: a 10 Hz logger would wear the SD card and
  cost milliseconds per sample); a telemetry commit is made FULL when ``sync_interval_s`` has
  passed since the last fsync, and :meth:`Spool.sync` / :meth:`Spool.close` fsync too, so a
  power cut loses at most the samples put since the last fsync. Acks are NORMAL: a lost ack
  only means a resend, which the master ignores.
- Ids are ``<file tag><seq>`` in hex: the file tag is random per spool file (a recreated spool
  never repeats an id), and seq is ``boot << 40 | n`` where ``boot`` is bumped and fsynced at
  each open. After a power cut rolls back un-synced puts, the next open uses a new boot, so
  an id the master may already hold is never given to another sample. Ids sort in put order.
- Delivery order: returns, then events, then telemetry; within a kind, put order. A job
  answer is never stuck behind hours of buffered samples.
- Limits: payload bytes are bounded by ``max_bytes`` on every put; ages by
  :meth:`Spool.enforce_limits`, which the sender loop calls periodically. When over
  ``max_bytes`` the oldest telemetry goes first, then the oldest events, and returns only when
  returns alone exceed the limit. By age: telemetry and events after ``max_age_s``, returns
  after ``max_age_returns_s``. Drops are counted in the file (total and not yet reported);
  :meth:`Spool.report_drops` turns the unreported count into one event item atomically.

Errors: SpoolError, the root; ItemTooLarge(SpoolError, ValueError) for a payload over the limit.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
import structlog

from autopi_agent import spool_db
from autopi_agent.spool_types import KINDS, Backoff, Drops, Item, Kind, SpoolStats

__all__ = ["DROP_EVENT_TAG", "KINDS", "Backoff", "Drops", "Item", "ItemTooLarge", "Kind", "Spool",
           "SpoolError", "SpoolStats"]

log = structlog.get_logger(__name__)

DROP_EVENT_TAG = "vehicle/spool/dropped"
MIB = 1024 * 1024
DAY = 86400.0
_SEQ_BITS = 40
_TAG_HEX = 12
_ID_LEN = _TAG_HEX + 16
_PRIO: dict[str, int] = {kind: n for n, kind in enumerate(KINDS)}
_CHUNK = 500


class SpoolError(Exception):
    """Root of the spool's errors."""


class ItemTooLarge(SpoolError, ValueError):
    """A payload larger than the spool's byte limit: it could never be kept."""


class Spool:
    """A durable, bounded outbox in one SQLite file; thread-safe, no module state."""

    def __init__(self, path: Path | str, *, max_bytes: int = 64 * MIB, max_age_s: float = 7 * DAY,
                 max_age_returns_s: float = 30 * DAY,
                 durable_kinds: Iterable[Kind] = ("return", "event"),
                 sync_interval_s: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        if max_bytes <= 0 or max_age_s <= 0 or max_age_returns_s <= 0:
            raise ValueError("spool limits must be positive")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.max_age_returns_s = max_age_returns_s
        self._durable = frozenset(_PRIO[_check_kind(kind)] for kind in durable_kinds)
        self._sync_interval = sync_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._since_start = Drops()
        self._last_sync = time.monotonic()
        self.recovered_from: Path | None = None
        self._closed = False
        self._db = self._open()
        self._tag, boot = self._start_boot()
        self._seq_base = boot << _SEQ_BITS
        self._next = 0

    # -- opening ----------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            return spool_db.connect(self.path)
        except sqlite3.DatabaseError as err:
            # An SD card can still corrupt a file; the agent must keep working, so the bad
            # file is kept aside for inspection and a fresh spool starts.
            self.recovered_from = spool_db.quarantine(self.path)
            log.error("spool.corrupt", path=str(self.path), moved_to=str(self.recovered_from),
                      error=str(err))
            return spool_db.connect(self.path)

    def _start_boot(self) -> tuple[str, int]:
        with self._write(durable=True) as db:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('file_tag', ?)",
                       (secrets.randbits(4 * _TAG_HEX),))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('boot', 0)")
            db.execute("UPDATE meta SET value = value + 1 WHERE key = 'boot'")
            tag = spool_db.meta(db, "file_tag")
            boot = spool_db.meta(db, "boot")
        return f"{tag:0{_TAG_HEX}x}", boot

    @contextmanager
    def _write(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._db
            if durable:
                db.execute("PRAGMA synchronous=FULL")
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            finally:
                if durable:
                    db.execute("PRAGMA synchronous=NORMAL")
                    self._last_sync = time.monotonic()

    def _wants_fsync(self, prio: int) -> bool:
        return prio in self._durable or time.monotonic() - self._last_sync >= self._sync_interval

    # -- writing ----------------------------------------------------------------------

    def put(self, kind: Kind, payload: Mapping[str, Any]) -> str:
        """Store one item; its id once it is committed (see the module doc for durability)."""
        return self.put_many(kind, [payload])[0]

    def put_many(self, kind: Kind, payloads: Sequence[Mapping[str, Any]]) -> list[str]:
        """Store several items of one kind in one transaction; their ids, in order."""
        prio = _PRIO[_check_kind(kind)]
        blobs = [msgpack.packb(dict(p), use_bin_type=True) for p in payloads]
        for blob in blobs:
            if len(blob) > self.max_bytes:
                raise ItemTooLarge(f"a {kind} item of {len(blob)} bytes exceeds the spool limit "
                                   f"of {self.max_bytes} bytes; raise max_bytes or send less")
        now = self._clock()
        counters = spool_db.Counters()
        with self._write(durable=self._wants_fsync(prio)) as db:
            # Seqs are taken before the commit, so a failed put never hands its seqs out again.
            first = self._seq_base + self._next + 1
            self._next += len(blobs)
            rows = [(first + n, prio, now, len(blob), blob) for n, blob in enumerate(blobs)]
            db.executemany("INSERT INTO items (seq, prio, created, size, payload) "
                           "VALUES (?, ?, ?, ?, ?)", rows)
            counters.add(prio, len(rows), sum(len(blob) for blob in blobs))
            spool_db.apply(db, counters)
            drops = self._evict_bytes(db)
            self._record(db, drops)
        self._count_dropped(drops)
        return [self._id(first + n) for n in range(len(blobs))]

    def ack(self, ids: Iterable[str]) -> int:
        """Delete acknowledged items; ids from another spool file or already gone are ignored."""
        seqs = [seq for seq in (self._seq(item_id) for item_id in ids) if seq is not None]
        removed = 0
        counters = spool_db.Counters()
        with self._write() as db:
            for start in range(0, len(seqs), _CHUNK):
                chunk = seqs[start:start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for prio, size in db.execute(
                        f"DELETE FROM items WHERE seq IN ({marks}) RETURNING prio, size", chunk):
                    counters.add(prio, -1, -size)
                    removed += 1
            spool_db.apply(db, counters)
        return removed

    def sync(self) -> None:
        """Fsync everything committed so far (the WAL), e.g. before a planned power-off."""
        with self._write(durable=True) as db:
            # A commit that changes nothing writes no WAL frame and so syncs nothing.
            db.execute("INSERT INTO meta VALUES ('syncs', 1) "
                       "ON CONFLICT (key) DO UPDATE SET value = value + 1")

    # -- reading ----------------------------------------------------------------------

    def peek(self, limit: int = 500, max_bytes: int = 256 * 1024,
             kinds: Iterable[Kind] | None = None) -> list[Item]:
        """The next items to send, at most ``limit`` and ``max_bytes`` (but at least one)."""
        prios = sorted(_PRIO[_check_kind(k)] for k in (KINDS if kinds is None else kinds))
        marks = ",".join("?" * len(prios))
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, prio, created, payload FROM items WHERE prio IN ({marks}) "
                "ORDER BY prio, seq LIMIT ?", (*prios, max(1, limit))).fetchall()
        items: list[Item] = []
        used = 0
        for seq, prio, created, payload in rows:
            used += len(payload)
            if items and used > max_bytes:
                break
            items.append(Item(self._id(seq), KINDS[prio], created, payload))
        return items

    def stats(self) -> SpoolStats:
        """Counts, bytes, age of the oldest queued item, and drops, per kind."""
        with self._lock:
            db = self._db
            totals = {prio: (count, size) for prio, count, size in
                      db.execute("SELECT prio, count, bytes FROM totals")}
            oldest = {kind: spool_db.head_created(db, prio) for kind, prio in _PRIO.items()}
            dropped = spool_db.drops_from_meta(db, "dropped")
            unreported = spool_db.drops_from_meta(db, "unreported")
            since_start = self._since_start
        file_bytes = sum(p.stat().st_size for p in spool_db.files(self.path) if p.exists())
        return SpoolStats(
            count={kind: totals.get(prio, (0, 0))[0] for kind, prio in _PRIO.items()},
            bytes={kind: totals.get(prio, (0, 0))[1] for kind, prio in _PRIO.items()},
            oldest=oldest, dropped_since_start=since_start, dropped_total=dropped,
            unreported=unreported, file_bytes=file_bytes)

    # -- limits -----------------------------------------------------------------------

    def enforce_limits(self) -> Drops:
        """Drop items past their age, then oldest over the byte limit, give free pages back.

        The sender loop calls this periodically (say every minute); returns what was dropped.
        """
        now = self._clock()
        counters = spool_db.Counters()
        with self._write() as db:
            for kind, horizon in (("telemetry", self.max_age_s), ("event", self.max_age_s),
                                  ("return", self.max_age_returns_s)):
                prio = _PRIO[kind]
                for (size,) in db.execute("DELETE FROM items WHERE prio = ? AND created < ? "
                                          "RETURNING size", (prio, now - horizon)):
                    counters.add(prio, -1, -size)
            spool_db.apply(db, counters)
            drops = Drops.of(*(-n for n in counters.count)) + self._evict_bytes(db)
            self._record(db, drops)
        with self._lock:
            spool_db.compact(self._db)
        self._count_dropped(drops)
        if drops.total:
            log.warning("spool.dropped", path=str(self.path), returns=drops.returns,
                        events=drops.events, telemetry=drops.telemetry)
        return drops

    def report_drops(self, tag: str = DROP_EVENT_TAG) -> Drops:
        """Turn the drops not yet reported into one event item, atomically; those drops."""
        with self._write(durable=True) as db:
            unreported = spool_db.drops_from_meta(db, "unreported")
            if not unreported.total:
                return unreported
            total = spool_db.drops_from_meta(db, "dropped")
            payload = {"tag": tag, "data": {"dropped": unreported.as_dict(),
                                            "dropped_total": total.as_dict()}}
            blob = msgpack.packb(payload, use_bin_type=True)
            seq = self._seq_base + self._next + 1
            self._next += 1
            prio = _PRIO["event"]
            db.execute("INSERT INTO items (seq, prio, created, size, payload) VALUES (?, ?, ?, ?, ?)",
                       (seq, prio, self._clock(), len(blob), blob))
            counters = spool_db.Counters()
            counters.add(prio, 1, len(blob))
            spool_db.apply(db, counters)
            db.execute("UPDATE meta SET value = 0 WHERE key LIKE 'unreported.%'")
        return unreported

    def _evict_bytes(self, db: sqlite3.Connection) -> Drops:
        (total,) = db.execute("SELECT coalesce(sum(bytes), 0) FROM totals").fetchone()
        excess = total - self.max_bytes
        dropped = [0] * len(KINDS)
        for kind in ("telemetry", "event", "return"):
            if excess <= 0:
                break
            prio = _PRIO[kind]
            count, freed = spool_db.drop_oldest(db, prio, excess)
            dropped[prio] = count
            excess -= freed
        return Drops.of(*dropped)

    def _record(self, db: sqlite3.Connection, drops: Drops) -> None:
        for kind, count in drops.as_dict().items():
            if count:
                for prefix in ("dropped", "unreported"):
                    db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) "
                               "DO UPDATE SET value = value + excluded.value",
                               (f"{prefix}.{kind}", count))

    def _count_dropped(self, drops: Drops) -> None:
        if drops.total:
            with self._lock:
                self._since_start = self._since_start + drops

    # -- ids and closing --------------------------------------------------------------

    def _id(self, seq: int) -> str:
        return f"{self._tag}{seq:016x}"

    def _seq(self, item_id: str) -> int | None:
        if len(item_id) != _ID_LEN:
            raise ValueError(f"not a spool item id: {item_id!r}")
        try:
            seq = int(item_id[_TAG_HEX:], 16)
        except ValueError:
            raise ValueError(f"not a spool item id: {item_id!r}") from None
        return seq if item_id[:_TAG_HEX] == self._tag else None

    def close(self) -> None:
        """Fsync and close; the spool is unusable afterwards. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
        try:
            self.sync()
        finally:
            with self._lock:
                if not self._closed:
                    self._db.close()
                    self._closed = True

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _check_kind(kind: str) -> Kind:
    if kind not in _PRIO:
        raise ValueError(f"unknown spool item kind {kind!r}: use one of {', '.join(KINDS)}")
    return kind  # type: ignore[return-value]
