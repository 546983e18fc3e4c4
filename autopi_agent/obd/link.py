"""The serial side of an ELM327: a command out, its reply up to the prompt in, within a deadline.

python-OBD reads with a fixed 10 s port timeout and retries an empty read for up to a
second, so a silent adapter blocks one query for minutes. Here the port's timeout is only
a short polling slice; every wait has a deadline of its own and ends in ObdTimeout.
"""

from __future__ import annotations

import os
import random
import termios
import time
from collections.abc import Callable

import serial
import structlog

from autopi_agent.obd.errors import ObdAdapterGone, ObdTimeout
from autopi_agent.obd.replies import split_lines
from autopi_agent.obd.settings import BAUDRATES

__all__ = ["POLL", "PROMPT", "ElmLink", "open_port"]

log = structlog.get_logger(__name__)

PROMPT = b">"
POLL = 0.02  # seconds a single read may block: the granularity of every deadline here
_FIRST_BAUD_WAIT = 1.2  # the power-on baud rate gets time for a reset that may be running
_OTHER_BAUD_WAIT = 0.3
# What a vanished device raises: pyserial's errors, EIO, and termios calls on a dead pty.
PORT_ERRORS = (serial.SerialException, OSError, termios.error)


def open_port(port: str, baudrate: int) -> serial.SerialBase:
    """Open ``port`` (device path or pyserial URL); raises ObdAdapterGone saying why not."""
    if "://" not in port and not os.path.exists(port):
        raise ObdAdapterGone(f"no OBD adapter at {port}: the device does not exist "
                             "(unplugged, or set obd.port in the agent config)")
    try:
        return serial.serial_for_url(port, baudrate=baudrate or BAUDRATES[0], timeout=POLL,
                                     write_timeout=2.0)
    except (*PORT_ERRORS, ValueError) as err:
        raise ObdAdapterGone(f"cannot open the OBD adapter at {port}: {err}") from err


def _spaced(command: str, rng: random.Random) -> str:
    """``command`` with 1-6 spaces after its first character and 0-5 after the others but
    the last: never the plain spelling, one of 6^(len-1) others."""
    gaps = [rng.randrange(1, 7)] + [rng.randrange(6) for _ in command[2:]]
    return "".join(char + " " * gap for char, gap in zip(command, gaps, strict=False)) + command[-1]


class ElmLink:
    """One open port to an ELM327. Not thread-safe: the connection owner's thread uses it."""

    def __init__(self, port: serial.SerialBase, name: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.port = port
        self.name = name
        self._clock = clock
        self._random = random.Random()
        self._unread = bytearray()  # read past a prompt: the start of the next reply
        if port.timeout != POLL:
            port.timeout = POLL  # python-OBD opened it with 10 s: our deadlines rule instead
        if port.write_timeout is None:
            port.write_timeout = 2.0

    # ------------------------------------------------------------ primitives

    def write(self, data: bytes) -> None:
        """Write raw bytes; ObdAdapterGone/ObdTimeout when the port fails or stalls."""
        try:
            self.port.write(data)
            self.port.flush()
        except serial.SerialTimeoutException as err:
            raise ObdTimeout(f"the OBD adapter at {self.name} stopped accepting data") from err
        except PORT_ERRORS as err:
            raise ObdAdapterGone(f"the OBD adapter at {self.name} is gone: {err}") from err

    def read_some(self, until: float) -> bytes:
        """Whatever arrives before ``until`` (monotonic), returned as soon as something does."""
        try:
            while True:
                data = self.port.read(self.port.in_waiting or 1)
                if data or self._clock() >= until:
                    return bytes(data)
        except PORT_ERRORS as err:
            raise ObdAdapterGone(f"the OBD adapter at {self.name} is gone: {err}") from err

    def read_reply(self, deadline: float, what: str) -> bytes:
        """Bytes up to (without) the next prompt; ObdTimeout at ``deadline``. Bytes after
        the prompt (the next reply, when two came at once) are kept for the next call."""
        buffer, self._unread = self._unread, bytearray()
        while PROMPT not in buffer:
            if self._clock() >= deadline:
                self._unread = buffer
                raise ObdTimeout(f"{what}: the OBD adapter at {self.name} did not answer in "
                                 f"time (got {bytes(buffer)[:60]!r})")
            buffer += self.read_some(deadline)
        reply, _, rest = bytes(buffer).partition(PROMPT)
        self._unread = bytearray(rest)
        return reply

    def discard_input(self) -> None:
        """Drop whatever the adapter sent that nobody asked for."""
        if self._unread.strip():
            log.info("obd.stale_bytes_dropped", port=self.name, count=len(self._unread))
        self._unread = bytearray()
        try:
            self.port.reset_input_buffer()
        except PORT_ERRORS as err:
            raise ObdAdapterGone(f"the OBD adapter at {self.name} is gone: {err}") from err

    # ------------------------------------------------------------ commands

    def exchange(self, command: str, timeout: float) -> list[str]:
        """Send ``command`` (no CR) and return its reply lines; at most ``timeout`` seconds."""
        deadline = self._clock() + timeout
        self.discard_input()
        self.write(command.encode("ascii") + b"\r")
        return split_lines(self.read_reply(deadline, command))

    def sync(self, timeout: float) -> None:
        """Bring the line to a known state: every stale reply (such as a late ATZ banner, or
        the answer to a command someone else sent) read and dropped, echo off.

        "OK" cannot tell our reply from a stale one, so the marker is the echo of a command
        spelt with a random pattern of spaces (which the ELM327 ignores): ATE1, then ATE1
        spelt so, then ATE0. ObdTimeout if the adapter never answers.
        """
        deadline = self._clock() + timeout
        marker = _spaced("ATE1", self._random)
        self.discard_input()
        self.write(b"ATE1\r" + marker.encode("ascii") + b"\r")
        while True:
            lines = split_lines(self.read_reply(deadline, "ATE1"))
            if any(line.endswith(marker) for line in lines):
                break
            if lines not in (["OK"], ["ATE1", "OK"]):  # else: the plain ATE1's own reply
                log.info("obd.stale_reply_dropped", port=self.name, lines=lines[:4])
        lines = self.exchange("ATE0", max(deadline - self._clock(), POLL))
        if not lines or not lines[-1].endswith("OK"):
            raise ObdTimeout(f"the OBD adapter at {self.name} did not accept ATE0: {lines}")

    def detect_baudrate(self) -> int:
        """The baud rate the adapter answers at (python-OBD's order); ObdTimeout if none."""
        for index, baud in enumerate(BAUDRATES):
            self.port.baudrate = baud
            self.discard_input()
            # Two DELs and a CR: a harmless bad command (an empty line would repeat the last).
            self.write(b"\x7f\x7f\r")
            wait = _FIRST_BAUD_WAIT if index == 0 else _OTHER_BAUD_WAIT
            try:
                self.read_reply(self._clock() + wait, "baud rate detection")
            except ObdTimeout:
                continue
            log.info("obd.baudrate_detected", port=self.name, baudrate=baud)
            return baud
        raise ObdTimeout(f"no ELM327 answered at {self.name} at any baud rate "
                         f"({', '.join(map(str, BAUDRATES))}): is the adapter powered?")

    def close(self) -> None:
        """Close the port (no ATZ: a reset reply arriving late is what trips the next user)."""
        # pyserial's socket:// close() skips closing the socket when shutdown() fails, as
        # it does once the peer has gone: without this, every lost Wi-Fi adapter leaks a
        # file descriptor.
        sock = getattr(self.port, "_socket", None)
        if sock is not None:
            sock.close()
        try:
            self.port.close()
        except PORT_ERRORS as err:
            log.info("obd.close_failed", port=self.name, error=str(err))
