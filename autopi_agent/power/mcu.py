"""The power MCU behind a Protocol, and its serial driver (pyserial: a UART, a pty or socket://)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import structlog

from autopi_agent.portlock import PortBusy, PortLock
from autopi_agent.power import protocol
from autopi_agent.power.errors import McuError, McuProtocolError, McuRefused, McuTimeout
from autopi_agent.power.protocol import Frame, McuStatus, SleepRequest

__all__ = ["PowerMcu", "SerialMcu"]

log = structlog.get_logger(__name__)

_READ_SLICE = 0.05


class PowerMcu(Protocol):
    """What the power manager asks of the MCU; every call is bounded in time."""

    def status(self) -> McuStatus:
        """Battery voltage, ignition line, MCU uptime, last wake reason, watchdog."""
        ...

    def heartbeat(self, timeout: float) -> float:
        """Kick the watchdog, (re)arming it for ``timeout`` s (0 disarms); returns it."""
        ...

    def sleep(self, request: SleepRequest) -> None:
        """Ask the MCU to cut the Pi's power after a delay and wake it on the triggers."""
        ...

    def hibernate(self, delay: float) -> None:
        """Ask the MCU to cut the Pi's power after ``delay`` s; only ignition wakes it."""
        ...

    def close(self) -> None:
        """Release the port."""
        ...


def _open_url(url: str, baudrate: int) -> Any:
    import serial

    try:
        return serial.serial_for_url(url, baudrate=baudrate, timeout=_READ_SLICE,
                                     write_timeout=2.0)
    except (serial.SerialException, OSError, ValueError) as err:
        raise McuError(f"cannot open the power MCU at {url}: {err}") from err


class SerialMcu:
    """The MCU on a serial line; one request at a time, reopened after an I/O error.

    ``open_port`` makes a pyserial-like object (read/write/close) from the url; the
    default is ``serial.serial_for_url``, which takes device paths and ``socket://``.
    """

    def __init__(self, url: str, baudrate: int = 115200, timeout: float = 2.0, *,
                 attempts: int = 2,
                 open_port: Callable[[str, int], Any] = _open_url,
                 lock_dir: str | Path | None = None) -> None:
        self.url = url
        # Held while the port is open: one process at a time talks to the MCU.
        self._port_lock = PortLock(url, lock_dir) if lock_dir is not None else None
        self.baudrate = baudrate
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.boot_reason: str | None = None
        self._open_port = open_port
        self._port: Any = None
        self._lines = protocol.LineSplitter()
        self._seq = 0
        self._lock = threading.Lock()

    def status(self) -> McuStatus:
        return protocol.parse_status(self._request(protocol.status_frame))

    def heartbeat(self, timeout: float) -> float:
        return protocol.parse_heartbeat(
            self._request(lambda seq: protocol.heartbeat_frame(seq, timeout)))

    def sleep(self, request: SleepRequest) -> None:
        self._request(lambda seq: protocol.sleep_frame(seq, request))

    def hibernate(self, delay: float) -> None:
        self._request(lambda seq: protocol.hibernate_frame(seq, delay))

    def close(self) -> None:
        with self._lock:
            self._drop_port()

    def _request(self, make: Callable[[int], Frame]) -> Frame:
        with self._lock:
            for attempt in range(1, self.attempts + 1):
                frame = make(self._next_seq())
                try:
                    return self._exchange(frame)
                except McuTimeout:
                    log.warning("power.mcu_timeout", verb=frame.verb, attempt=attempt)
                    if attempt == self.attempts:
                        raise
            raise AssertionError("unreachable")

    def _next_seq(self) -> int:
        self._seq = self._seq % 0xFF + 1  # 01..FF: 00 is the MCU's own messages
        return self._seq

    def _exchange(self, frame: Frame) -> Frame:
        port = self._ensure_port()
        try:
            port.write(protocol.encode(frame))
            reply = self._await_reply(port, frame.seq)
        except McuTimeout:
            self._drop_port()  # a half-open link looks like this: start afresh next time
            raise
        except OSError as err:
            self._drop_port()
            raise McuError(f"the power MCU at {self.url} went away: {err}") from err
        if reply.verb == "ERR":
            raise McuRefused(f"the power MCU refused {frame.verb}: {reply.get('code')}")
        if reply.verb != "OK":
            raise McuProtocolError(f"the power MCU answered {frame.verb} with {reply.verb}")
        return reply

    def _await_reply(self, port: Any, seq: int) -> Frame:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            data = port.read(max(1, getattr(port, "in_waiting", 0) or 1))
            for line in self._lines.feed(data):
                frame = self._frame(line)
                if frame is not None and frame.seq == seq:
                    return frame
        raise McuTimeout(f"the power MCU at {self.url} did not answer within {self.timeout:g} s")

    def _frame(self, line: bytes) -> Frame | None:
        try:
            frame = protocol.decode(line)
        except McuProtocolError as err:
            if line:
                log.debug("power.mcu_noise", error=str(err))
            return None
        if frame.seq == protocol.UNSOLICITED and frame.verb == "BOOT":
            self.boot_reason = frame.get("wake")
            log.info("power.mcu_boot", wake=self.boot_reason)
        return frame

    def _ensure_port(self) -> Any:
        if self._port is None:
            if self._port_lock is not None:
                try:
                    self._port_lock.acquire()
                except PortBusy as err:
                    raise McuError(err.advice("the power MCU")) from None
            try:
                self._port = self._open_port(self.url, self.baudrate)
            except BaseException:
                if self._port_lock is not None:
                    self._port_lock.release()
                raise
            self._lines = protocol.LineSplitter()
        return self._port

    def _drop_port(self) -> None:
        if self._port is not None:
            # pyserial's socket:// close() skips closing the socket when shutdown() fails
            # (the peer already went away), which would leak it.
            sock = getattr(self._port, "_socket", None)
            try:
                self._port.close()
            except OSError:
                pass
            if sock is not None:
                sock.close()
            self._port = None
        if self._port_lock is not None:
            self._port_lock.release()
