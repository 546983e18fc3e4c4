"""Returner ``jsonl``: job returns as JSON lines in local files, rotated by size.

Each return is one line: ``{"ts": <unix seconds>, "id", "jid", "fun", "fun_args", "return",
"retcode", "success"}`` (bytes become hex text). Settings (``returners: {jsonl: {...}}``):

============ ======================== ==============================================
directory    ``returns``              where the files live, relative to the cachedir
                                      (created with mode 0700)
filename     ``returns.jsonl``        the current file; backups are ``.1`` (newest) ...
max_bytes    1048576                  rotate before a line would take the file past it
backups      5                        rotated files kept; 0 keeps only the current one
fsync        ``always``               ``always``: each line reaches the disk before the
                                      returner answers (returns are rare, a power cut must
                                      not lose one); ``rotate``: only at rotation and
                                      close; ``never``: leave it to the OS
============ ======================== ==============================================

A single line longer than ``max_bytes`` is written alone into a fresh file. Files are mode
0600: returns can hold anything a job printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autopi_agent.minion.context import AgentContext
from autopi_agent.returners import ReturnerConfigError, check_settings
from autopi_common.fsutil import ensure_dir, fsync_dir
from autopi_proto.messages import JobReturn

__all__ = ["FSYNC_POLICIES", "JsonlReturner", "create", "encode"]

FSYNC_POLICIES = ("always", "rotate", "never")
_SETTINGS = ("directory", "filename", "max_bytes", "backups", "fsync")


def encode(ret: JobReturn, ts: float) -> bytes:
    """One return as a JSON line (with its newline)."""
    record = {"ts": ts, **{key: value for key, value in ret.load().items() if key != "cmd"}}
    text = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=_plain)
    return text.encode("utf-8") + b"\n"


def _plain(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


class JsonlReturner:
    """Appends returns to ``directory/filename``, rotating at ``max_bytes``."""

    def __init__(self, directory: Path | str, *, filename: str = "returns.jsonl",
                 max_bytes: int = 1 << 20, backups: int = 5, fsync: str = "always") -> None:
        if fsync not in FSYNC_POLICIES:
            raise ReturnerConfigError(f"returners.jsonl.fsync: expected one of "
                                      f"{', '.join(FSYNC_POLICIES)}, got {fsync!r}")
        if max_bytes <= 0 or backups < 0:
            raise ReturnerConfigError("returners.jsonl: max_bytes must be above 0 and "
                                      "backups 0 or more")
        if not filename or "/" in filename or filename.startswith("."):
            raise ReturnerConfigError(f"returners.jsonl.filename: expected a plain file name, "
                                      f"got {filename!r}")
        self.directory = Path(directory)
        self.path = self.directory / filename
        self.max_bytes = max_bytes
        self.backups = backups
        self.fsync = fsync
        self._fd: int | None = None
        self._size = 0
        self._lock = threading.Lock()

    async def send(self, ret: JobReturn) -> None:
        await asyncio.to_thread(self.append, encode(ret, time.time()))

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def append(self, line: bytes) -> None:
        """Write one encoded line, rotating first when it would overflow the file."""
        with self._lock:
            fd = self._open()
            if self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
                fd = self._open()
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            self._size += len(line)
            if self.fsync == "always":
                os.fsync(fd)

    def close(self) -> None:
        """Flush (unless fsync is ``never``) and close the current file."""
        with self._lock:
            self._close()

    def files(self) -> list[Path]:
        """The current file and the backups that exist, newest first."""
        candidates = [self.path] + [self._backup(n) for n in range(1, self.backups + 1)]
        return [path for path in candidates if path.exists()]

    def _open(self) -> int:
        if self._fd is None:
            ensure_dir(self.directory, 0o700)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW,
                               0o600)
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def _close(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self.fsync != "never":
                os.fsync(fd)
        finally:
            os.close(fd)

    def _backup(self, number: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{number}")

    def _rotate(self) -> None:
        self._close()
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            for number in range(self.backups - 1, 0, -1):
                if self._backup(number).exists():
                    os.replace(self._backup(number), self._backup(number + 1))
            os.replace(self.path, self._backup(1))
        if self.fsync != "never":
            fsync_dir(self.directory)


def create(ctx: AgentContext, settings: Mapping[str, Any]) -> JsonlReturner:
    """The jsonl returner with the agent's settings."""
    check_settings("jsonl", settings, _SETTINGS)
    # A relative directory is under the cachedir, like everything else the agent writes.
    directory = Path(str(ctx.opts.get("cachedir", "cache"))) / str(settings.get("directory", "returns"))
    numbers = {key: settings.get(key, default) for key, default in
               (("max_bytes", 1 << 20), ("backups", 5))}
    for key, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ReturnerConfigError(f"returners.jsonl.{key}: expected a whole number, got {value!r}")
    return JsonlReturner(directory, filename=str(settings.get("filename", "returns.jsonl")),
                         max_bytes=numbers["max_bytes"], backups=numbers["backups"],
                         fsync=str(settings.get("fsync", "always")))
