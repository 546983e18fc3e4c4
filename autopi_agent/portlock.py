"""One agent process at a time on a serial port: an advisory lock file per port (flock).

The daemon holds the lock while it has the port open; a local `autopi-agent call` on the
same dongle then gets a clear "in use" error instead of interleaving its bytes with the
daemon's (which would garble both conversations with the adapter or the power MCU). The
lock dies with the process that holds it, so a crash never leaves a port locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from pathlib import Path

__all__ = ["PortBusy", "PortLock", "lock_dir"]


def lock_dir(cachedir: str | Path) -> Path:
    """Where every process of one agent keeps its port locks: they exclude each other only
    if they agree on this directory."""
    return Path(cachedir) / "locks"


class PortBusy(Exception):
    """Another process holds the port's lock."""

    def advice(self, device: str) -> str:
        """What a user calling with ``--local`` reads: ``device`` (e.g. "the OBD adapter") is
        busy, and how to reach it through the daemon instead."""
        return (f"{device} at {self}; while the agent daemon runs, call without --local (the "
                "call then runs in the daemon) or send the job from the master")


class PortLock:
    """The lock of ``port`` (a device path, a pty, or a ``socket://`` URL) in ``lock_dir``."""

    def __init__(self, port: str, lock_dir: str | Path) -> None:
        # Two names of one device (/dev/serial0 -> ttyAMA0) must share a lock.
        target = os.path.realpath(port) if port.startswith("/") else port
        self.port = port
        self.path = Path(lock_dir) / ("port-" + re.sub(r"[^A-Za-z0-9._-]", "_", target) + ".lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock (no-op when held); PortBusy naming the holder's pid otherwise."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise PortBusy(f"{self.port} is in use by another process (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (no-op when not held)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor releases the flock
