"""Stand-ins that are real programs on real ptys: an adapter that never answers, and an
ELM327 front end that adds ATMA (monitor all) to the simulator's adapter."""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty
from pathlib import Path
from types import TracebackType
from typing import Self

from hil import Elm327

_POLL = 0.02


class _PtyServer:
    """A pty whose other end is served by a thread; ``path`` is a stable symlink to it."""

    def __init__(self, link: Path) -> None:
        self.path = str(link)
        self._link = link
        self._master, slave = os.openpty()
        tty.setraw(slave)
        self._slave = slave
        os.set_blocking(self._master, False)
        link.symlink_to(os.ttyname(slave))
        self.received = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fake-{type(self).__name__}",
                                        daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and close the pty: a reader blocked on the other end gets EIO."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with contextlib.suppress(FileNotFoundError):
            self._link.unlink()
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _run(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self._master], [], [], _POLL)
            if not readable:
                continue
            try:
                data = os.read(self._master, 4096)
            except (BlockingIOError, OSError):
                continue
            self.received += data
            self.on_input(data)

    def on_input(self, data: bytes) -> None:
        """Called on the server thread with what the client wrote."""

    def send(self, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._master, data)


class SilentAdapter(_PtyServer):
    """An adapter that takes every byte and never answers (a hung chip, a dead UART)."""


class MonitoringAdapter(_PtyServer):
    """The simulator's ELM327 interpreter on a pty of its own, plus ATMA: while monitoring
    it prints one frame every ``interval`` seconds until any byte arrives."""

    FRAMES = ("7E8 04 41 0C 0C 30", "7E9 03 41 0D 31", "7DF 02 01 0C")

    def __init__(self, link: Path, elm: Elm327, interval: float = 0.01) -> None:
        super().__init__(link)
        self._elm = elm
        self._interval = interval
        self._line = bytearray()
        self._monitoring = threading.Event()
        self._streamer: threading.Thread | None = None

    def on_input(self, data: bytes) -> None:
        if self._monitoring.is_set():
            self._monitoring.clear()  # any byte stops ATMA, as on the chip
            if self._streamer is not None:
                self._streamer.join(5)
            self.send(b"\r>")
            return
        for byte in data:
            if byte == 0x0D:
                self._handle(bytes(self._line))
                self._line.clear()
            elif byte != 0x0A:
                self._line.append(byte)

    def _handle(self, line: bytes) -> None:
        if line.strip().upper().replace(b" ", b"") == b"ATMA":
            self._monitoring.set()
            self._streamer = threading.Thread(target=self._stream, name="fake-atma", daemon=True)
            self._streamer.start()
            return
        reply = self._elm.handle(line)
        self.send(reply.echo + reply.body)

    def _stream(self) -> None:
        index = 0
        while self._monitoring.is_set() and not self._stop.is_set():
            self.send(self.FRAMES[index % len(self.FRAMES)].encode() + b"\r")
            index += 1
            time.sleep(self._interval)

    def close(self) -> None:
        self._monitoring.clear()
        super().close()
