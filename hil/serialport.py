"""The adapter's serial side: a pty and a 127.0.0.1 TCP port, paced like a UART, unpluggable."""

from __future__ import annotations

import contextlib
import os
import random
import select
import socket
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import structlog

from hil.elm import Elm327
from hil.errors import HilError
from hil.faults import FaultKind, FaultSet

log = structlog.get_logger(__name__)

Write = Callable[[bytes], None]
_MAX_LINE = 256
_CHUNK = 32
_POLL = 0.05


class Session(Protocol):
    """What a port serves: the ELM327 adapter, or the power MCU (hil/mcu.py)."""

    def feed(self, data: bytes, write: Write) -> None: ...

    def poll(self, write: Write) -> None: ...

    def power_cycle(self) -> None: ...


class AdapterSession:
    """Bytes in, adapter output out: line assembly, the interpreter, pacing and line faults."""

    def __init__(
        self,
        make_elm: Callable[[], Elm327],
        faults: FaultSet,
        stop: threading.Event,
        *,
        baud: int = 38400,
        reset_delay: float = 0.5,
        seed: int = 0,
    ) -> None:
        self._make_elm = make_elm
        self.elm = make_elm()
        self._faults = faults
        self._stop = stop
        self._bytes_per_second = baud / 10 if baud > 0 else 0.0  # 8N1: ten bits a byte
        self._reset_delay = reset_delay
        self._random = random.Random(seed)
        self._buffer = bytearray()

    def power_cycle(self) -> None:
        """A fresh chip, as after plugging the adapter back in."""
        self.elm = self._make_elm()
        self._buffer.clear()

    def poll(self, write: Write) -> None:
        """Nothing to send unasked: the adapter only ever answers."""

    def feed(self, data: bytes, write: Write) -> None:
        for byte in data:
            if byte == 0x0D:
                line, self._buffer = bytes(self._buffer), bytearray()
                self._process(line, write)
            elif byte != 0x0A and len(self._buffer) < _MAX_LINE:
                self._buffer.append(byte)

    def _process(self, line: bytes, write: Write) -> None:
        reply = self.elm.handle(line)
        garbage = self._faults.get(FaultKind.GARBAGE)
        if garbage is not None:
            self._paced(write, self._junk(garbage.count))
        self._paced(write, reply.echo)
        if reply.reset and self._stop.wait(self._reset_delay):
            return
        self._paced(write, reply.body)

    def _junk(self, count: int) -> bytes:
        # anything but the prompt, so a reader still waits for the real answer
        return bytes(self._random.choice([b for b in range(256) if b != ord(">")]) for _ in range(count))

    def _paced(self, write: Write, data: bytes) -> None:
        if not self._bytes_per_second:
            write(data)
            return
        for i in range(0, len(data), _CHUNK):
            chunk = data[i : i + _CHUNK]
            write(chunk)
            time.sleep(len(chunk) / self._bytes_per_second)


class _PortThread:
    """A thread that owns one port's descriptors; plug/unplug requests run on that thread."""

    kind = "port"

    def __init__(self, session: Session, stop: threading.Event) -> None:
        self.session = session
        self._stop = stop
        self._requests: list[tuple[bool, threading.Event]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.plugged = False

    def start(self) -> None:
        self._plug()
        self._thread = threading.Thread(target=self._run, name=f"hil-{self.kind}", daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._unplug()

    def set_plugged(self, plugged: bool, timeout: float = 10.0) -> None:
        """Unplug or plug back in; returns once the port thread has done it."""
        done = threading.Event()
        with self._lock:
            self._requests.append((plugged, done))
        if not done.wait(timeout):
            raise TimeoutError(
                f"the {self.kind} thread did not {'plug' if plugged else 'unplug'} in {timeout} s"
            )

    def _apply_requests(self) -> None:
        with self._lock:
            requests, self._requests = self._requests, []
        for plugged, done in requests:
            if plugged and not self.plugged:
                try:
                    self._plug()
                except HilError as err:
                    log.error(f"{self.kind}.replug_failed", error=str(err))
                    done.set()
                    continue
                self.session.power_cycle()
            elif not plugged and self.plugged:
                self._unplug()
            done.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._apply_requests()
            if not self.plugged:
                self._stop.wait(_POLL)
                continue
            try:
                self._serve_once()
            except OSError as err:
                log.warning(f"{self.kind}.io_error", error=str(err))
                self._stop.wait(_POLL)

    def _plug(self) -> None:
        raise NotImplementedError

    def _unplug(self) -> None:
        raise NotImplementedError

    def _serve_once(self) -> None:
        raise NotImplementedError


class PtyPort(_PortThread):
    """The adapter as a serial device: a pty, reachable through a stable symlink."""

    kind = "pty"

    def __init__(self, session: Session, stop: threading.Event, link_path: Path) -> None:
        super().__init__(session, stop)
        self.link_path = link_path
        self.device: str | None = None
        self._master: int | None = None
        self._slave: int | None = None

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo or line editing by the kernel: the adapter does its own
        os.set_blocking(master, False)
        self._master, self._slave, self.device = master, slave, os.ttyname(slave)
        temporary = self.link_path.with_name(self.link_path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        temporary.symlink_to(self.device)
        os.replace(temporary, self.link_path)
        self.plugged = True
        log.info("pty.plugged", path=str(self.link_path), device=self.device)

    def _unplug(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.link_path.unlink()
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)  # the client's next read or write fails, as when a USB adapter is pulled
        self._master = self._slave = None
        if self.plugged:
            log.info("pty.unplugged", device=self.device)
        self.plugged = False

    def _serve_once(self) -> None:
        assert self._master is not None
        readable, _, _ = select.select([self._master], [], [], _POLL)
        self.session.poll(self._write)
        if not readable:
            return
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        self.session.feed(data, self._write)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self._master is not None and not self._stop.is_set():
            try:
                view = view[os.write(self._master, view) :]
            except BlockingIOError:
                _, writable, _ = select.select([], [self._master], [], 1.0)
                if not writable:
                    log.warning("pty.output_dropped", bytes=len(view))  # nobody reads the other end
                    return


class TcpPort(_PortThread):
    """The adapter as a Wi-Fi dongle: one client at a time on 127.0.0.1:PORT; a new one replaces the old."""

    kind = "tcp"

    def __init__(
        self, session: Session, stop: threading.Event, port: int = 0, host: str = "127.0.0.1"
    ):
        super().__init__(session, stop)
        self.host = host
        self.port = port
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None

    def _plug(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
        except OSError as err:
            listener.close()
            raise HilError(
                f"the adapter cannot listen on {self.host}:{self.port}: {err.strerror} "
                "(pick another --tcp-port, 0 for any free port)"
            ) from err
        listener.listen(1)
        self.port = listener.getsockname()[1]  # keep the same port across unplug/replug
        self._listener = listener
        self.plugged = True
        log.info("tcp.plugged", host=self.host, port=self.port)

    def _unplug(self) -> None:
        for sock in (self._client, self._listener):
            if sock is not None:
                sock.close()
        self._client = self._listener = None
        if self.plugged:
            log.info("tcp.unplugged", port=self.port)
        self.plugged = False

    def _serve_once(self) -> None:
        assert self._listener is not None
        watched = [self._listener] + ([self._client] if self._client else [])
        readable, _, _ = select.select(watched, [], [], _POLL)
        if self._client is not None:
            self.session.poll(self._send)
        if self._listener in readable:
            client, _ = self._listener.accept()
            client.settimeout(5.0)  # a client that stops reading cannot wedge the adapter
            if self._client is not None:
                self._client.close()
            self._client = client
            log.info("tcp.client_connected")
        if self._client is not None and self._client in readable:
            data = self._client.recv(4096)
            if not data:
                self._client.close()
                self._client = None
                return
            self.session.feed(data, self._send)

    def _send(self, data: bytes) -> None:
        if self._client is None:
            return
        try:
            self._client.sendall(data)
        except OSError as err:
            log.info("tcp.client_gone", error=str(err))
            self._client.close()
            self._client = None
