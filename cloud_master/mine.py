"""The Salt mine on the master: the latest value of each minion's mine functions, and lookups.

Values live in SQLite (``cachedir/mine.sqlite``, WAL), one row per (minion, function): an
update touches only that row (a fleet of thousands writing every few minutes would make a
whole-file rewrite the cost), the table survives a master restart, and a power cut in the
middle of a write leaves the previous value. The request handlers take Salt's loads
(``_mine``, ``_mine_get``, ``_mine_delete``, ``_mine_flush``), so a stock salt-minion uses
this mine too; ``_mine_get`` answers only with accepted minions' values.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from autopi_proto import messages, targeting
from cloud_master.jobcache import decode_value, encode_value
from cloud_master.pki import KeyState, KeyStore

__all__ = ["ACL_DATA", "ACL_ID", "MineService", "MineStore"]

log = structlog.get_logger(__name__)

# Salt's marker of a mine value wrapped with a minion-side ACL (allow_tgt).
ACL_ID = "__saltmine_acl__"
ACL_DATA = "__data__"

Handler = Callable[[messages.OpenedRequest], Awaitable[Any]]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mine (
    minion TEXT NOT NULL,
    fun TEXT NOT NULL,
    value TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (minion, fun)
) WITHOUT ROWID
"""


class MineStore:
    """The latest mine value per (minion, function), in one SQLite file; thread-safe."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def update(self, minion: str, data: Mapping[str, Any], *, clear: bool = False) -> None:
        """Store ``data`` ({function: value}) for ``minion``; ``clear`` drops its other values."""
        now = time.time()
        rows = [(minion, str(fun), encode_value(value), now) for fun, value in data.items()]
        with self._lock, self._db:
            self._db.execute("BEGIN")
            if clear:
                self._db.execute("DELETE FROM mine WHERE minion = ?", (minion,))
            self._db.executemany(
                "INSERT INTO mine (minion, fun, value, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (minion, fun) DO UPDATE SET value = excluded.value, "
                "updated = excluded.updated", rows)

    def delete(self, minion: str, fun: str) -> bool:
        """Drop one function's value of ``minion``; True if there was one."""
        with self._lock:
            cursor = self._db.execute("DELETE FROM mine WHERE minion = ? AND fun = ?",
                                      (minion, fun))
        return cursor.rowcount > 0

    def flush(self, minion: str) -> None:
        """Drop every value of ``minion`` (its mine.flush, or its key deleted)."""
        with self._lock:
            self._db.execute("DELETE FROM mine WHERE minion = ?", (minion,))

    def minions(self) -> list[str]:
        """Ids that have mine data, sorted."""
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT minion FROM mine ORDER BY minion")
            return [row[0] for row in rows]

    def fetch(self, minions: Iterable[str], funs: Sequence[str]) -> dict[str, dict[str, Any]]:
        """{minion: {function: stored value}} for the given minions and functions."""
        wanted = list(minions)
        found: dict[str, dict[str, Any]] = {}
        if not wanted or not funs:
            return found
        with self._lock:
            rows = self._db.execute(
                f"SELECT minion, fun, value FROM mine WHERE minion IN "
                f"({','.join('?' * len(wanted))}) AND fun IN ({','.join('?' * len(funs))})",
                [*wanted, *funs]).fetchall()
        for minion, fun, value in rows:
            found.setdefault(minion, {})[fun] = decode_value(value)
        return found

    def close(self) -> None:
        """Close the database; the store is unusable afterwards."""
        with self._lock:
            self._db.close()


def _functions(fun: Any) -> tuple[list[str], bool] | None:
    """The requested functions and whether the answer is keyed by function (Salt's rule)."""
    if isinstance(fun, str) and fun:
        names = sorted(set(fun.split(",")))
        return names, len(names) > 1
    if isinstance(fun, list) and fun and all(isinstance(name, str) for name in fun):
        return list(fun), True
    return None


class MineService:
    """Mine lookups and the request handlers, over a MineStore, the keys and cached grains."""

    def __init__(self, store: MineStore, keys: KeyStore,
                 grains: Callable[[str], Mapping[str, Any]]) -> None:
        self.store = store
        self.keys = keys
        self.grains = grains

    def handlers(self) -> dict[str, Handler]:
        """The request handlers by cmd, to merge into ``RequestHandler.handlers``."""
        return {"_mine": self._mine, "_mine_get": self._mine_get,
                "_mine_delete": self._mine_delete, "_mine_flush": self._mine_flush}

    def get(self, tgt: str | Sequence[str], fun: str | Sequence[str], tgt_type: str = "glob",
            *, requester: str | None = None) -> dict[str, Any]:
        """Mine values of the accepted minions ``tgt`` selects, as Salt's mine.get shapes them:
        ``{minion: value}`` for one function, ``{function: {minion: value}}`` for a list or a
        comma-separated string. ``requester`` (a minion id) applies minion-side ACLs
        (``allow_tgt``); None is the master's operator, who sees everything.
        """
        parsed = _functions(list(fun) if isinstance(fun, (list, tuple)) else fun)
        if parsed is None:
            return {}
        funs, by_function = parsed
        accepted = set(self.keys.list()[KeyState.ACCEPTED])
        selected = [minion for minion in self.store.minions() if minion in accepted
                    and targeting.matches(tgt, tgt_type, minion, self.grains(minion))]
        found = self.store.fetch(selected, funs)
        answer: dict[str, Any] = {}
        for minion in selected:
            for name, stored in found.get(minion, {}).items():
                allowed, value = self._unwrap(stored, requester)
                if not allowed:
                    continue
                if by_function:
                    answer.setdefault(name, {})[minion] = value
                else:
                    answer[minion] = value
        return answer

    def _unwrap(self, stored: Any, requester: str | None) -> tuple[bool, Any]:
        if not isinstance(stored, dict) or ACL_ID not in stored:
            return True, stored
        value = stored.get(ACL_DATA)
        allow_tgt = stored.get("allow_tgt")
        if requester is None or not allow_tgt:
            return True, value
        allow_type = str(stored.get("allow_tgt_type") or "glob")
        allowed = targeting.matches(allow_tgt, allow_type, requester, self.grains(requester))
        return allowed, value

    async def _mine(self, req: messages.OpenedRequest) -> Any:
        data = req.load.get("data")
        if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
            log.warning("mine.bad_update", minion=req.minion_id)
            return False
        clear = bool(req.load.get("clear", False))
        await asyncio.to_thread(self.store.update, req.minion_id, data, clear=clear)
        log.debug("mine.updated", minion=req.minion_id, functions=sorted(data), clear=clear)
        return True

    async def _mine_get(self, req: messages.OpenedRequest) -> Any:
        load = req.load
        tgt, fun = load.get("tgt"), load.get("fun")
        tgt_type = load.get("tgt_type") or load.get("expr_form") or "glob"
        if not isinstance(tgt, (str, list)) or not isinstance(tgt_type, str) \
                or not isinstance(fun, (str, list)):
            return {}
        return await asyncio.to_thread(self.get, tgt, fun, tgt_type, requester=req.minion_id)

    async def _mine_delete(self, req: messages.OpenedRequest) -> Any:
        fun = req.load.get("fun")
        if not isinstance(fun, str):
            return False
        await asyncio.to_thread(self.store.delete, req.minion_id, fun)
        return True

    async def _mine_flush(self, req: messages.OpenedRequest) -> Any:
        await asyncio.to_thread(self.store.flush, req.minion_id)
        return True
