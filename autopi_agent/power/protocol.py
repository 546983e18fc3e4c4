"""The power MCU line protocol (pure codec, no I/O).

The Pi and the power MCU talk over a UART (115200 8N1) in ASCII lines, NMEA-style, so
line noise cannot pass for a command::

    $<SEQ> <VERB>[ <key>=<value>]...*<CK>\\r\\n

* ``SEQ``: two upper-case hex digits. The agent numbers its requests 01-FF (wrapping, 00
  skipped); the MCU answers with the same number, so a late reply is never read as the
  answer to the next request. 00 marks a message the MCU sends on its own.
* ``VERB``: upper-case letters. ``key``: lower-case letters, digits, ``_``. ``value``:
  printable ASCII without space, ``$``, ``*`` or ``=``; lists are comma-separated.
* ``CK``: two upper-case hex digits, the XOR of every byte between ``$`` and ``*``.
* A receiver drops any line that does not start with ``$``, is longer than 120 bytes,
  or whose checksum does not match; it never answers one.

Requests (agent -> MCU) and replies (MCU -> agent, ``OK`` or ``ERR code=...``):

=============================================  ==============================================
``STATUS``                                     ``OK v=12.63 ign=1 up=5321 wake=ignition wd=30``
``HB t=30``  (watchdog: power-cycle the Pi     ``OK t=30``  (``t=0`` disarms the watchdog)
if no HB comes within 30 s)
``SLEEP delay=10 wake=ignition,voltage_rise,   ``OK`` -- the MCU cuts the Pi's power after
timer timer=21600 rise=0.50``                  ``delay`` s and powers it up again on the first
                                               wake trigger; the watchdog is disarmed
``HIBERNATE delay=10``                         ``OK`` -- as SLEEP, but only ignition wakes
=============================================  ==============================================

``v`` battery voltage (V), ``ign`` ignition line (0/1), ``up`` MCU uptime (s), ``wake`` why
the MCU last powered the Pi up (``power_on``, ``ignition``, ``voltage_rise``, ``timer``,
``watchdog``), ``wd`` watchdog timeout armed (s, 0 = off). Errors: ``ERR code=unknown_verb``,
``ERR code=bad_argument``. When it powers the Pi up the MCU also sends, unasked,
``$00 BOOT wake=<reason>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from autopi_agent.power.errors import McuProtocolError

__all__ = ["HIBERNATE", "HEARTBEAT", "MAX_LINE", "SLEEP", "STATUS", "UNSOLICITED",
           "WAKE_REASONS", "WAKE_TRIGGERS", "Frame", "LineSplitter", "McuStatus",
           "SleepRequest", "checksum", "decode", "encode", "heartbeat_frame",
           "hibernate_frame", "parse_heartbeat", "parse_status", "sleep_frame",
           "status_frame"]

MAX_LINE = 120
UNSOLICITED = 0
STATUS, HEARTBEAT, SLEEP, HIBERNATE = "STATUS", "HB", "SLEEP", "HIBERNATE"
WAKE_TRIGGERS = ("ignition", "voltage_rise", "timer")
WAKE_REASONS = ("power_on", "ignition", "voltage_rise", "timer", "watchdog")

_FRAME = re.compile(rb"\$([0-9A-F]{2}) ([A-Z]+)((?: [a-z0-9_]+=[!-#%-)+-<>-~]+)*)\*([0-9A-F]{2})")
_KEY = re.compile(r"[a-z0-9_]+")
_VALUE = re.compile(r"[!-#%-)+-<>-~]+")  # printable, no space, '*' (0x2A), '$' (0x24) or '='


@dataclass(frozen=True, slots=True)
class Frame:
    """One line: sequence number, verb and its ``key=value`` fields in order."""

    seq: int
    verb: str
    fields: tuple[tuple[str, str], ...] = ()

    def get(self, key: str) -> str | None:
        """The value of ``key``, or None when the frame has no such field."""
        for name, value in self.fields:
            if name == key:
                return value
        return None

    def require(self, key: str) -> str:
        """The value of ``key``; McuProtocolError when it is missing."""
        value = self.get(key)
        if value is None:
            raise McuProtocolError(f"the MCU's {self.verb} reply has no {key}= field")
        return value


def checksum(body: bytes) -> int:
    """XOR of the bytes between ``$`` and ``*``."""
    value = 0
    for byte in body:
        value ^= byte
    return value


def encode(frame: Frame) -> bytes:
    """The frame as one wire line, CR LF terminated."""
    if not 0 <= frame.seq <= 0xFF or not frame.verb.isalpha() or not frame.verb.isupper():
        raise McuProtocolError(f"cannot encode seq={frame.seq} verb={frame.verb!r}")
    parts = [f"{frame.seq:02X}", frame.verb]
    for key, value in frame.fields:
        if not _KEY.fullmatch(key) or not _VALUE.fullmatch(value):
            raise McuProtocolError(f"cannot encode field {key}={value!r}")
        parts.append(f"{key}={value}")
    body = " ".join(parts).encode("ascii")
    line = b"$" + body + b"*" + f"{checksum(body):02X}".encode("ascii")
    if len(line) > MAX_LINE:
        raise McuProtocolError(f"frame of {len(line)} bytes exceeds {MAX_LINE}")
    return line + b"\r\n"


def decode(line: bytes) -> Frame:
    """Parse one line (with or without its CR LF); McuProtocolError for anything invalid."""
    line = line.strip(b"\r\n")
    if len(line) > MAX_LINE:
        raise McuProtocolError(f"line of {len(line)} bytes exceeds {MAX_LINE}")
    match = _FRAME.fullmatch(line)
    if match is None:
        raise McuProtocolError(f"not a frame: {line[:40]!r}")
    body = line[1:line.rindex(b"*")]
    if checksum(body) != int(match[4], 16):
        raise McuProtocolError(f"bad checksum in {line[:40]!r}")
    fields = tuple(tuple(item.split("=", 1)) for item in match[3].decode().split())
    return Frame(int(match[1], 16), match[2].decode(), fields)


class LineSplitter:
    """Bytes in, complete lines out; an over-long run of bytes is dropped, not split."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._overflow = False

    def feed(self, data: bytes) -> list[bytes]:
        lines = []
        for byte in data:
            if byte == 0x0A:
                if not self._overflow:
                    lines.append(bytes(self._buffer).rstrip(b"\r"))
                self._buffer.clear()
                self._overflow = False
            elif len(self._buffer) <= MAX_LINE:
                self._buffer.append(byte)
            else:
                self._overflow = True
        return lines


@dataclass(frozen=True, slots=True)
class McuStatus:
    """The MCU's answer to STATUS."""

    battery_voltage: float
    ignition: bool
    uptime: float
    wake_reason: str
    watchdog: float


@dataclass(frozen=True, slots=True)
class SleepRequest:
    """Cut the Pi's power after ``delay`` s; wake on ``wake`` triggers (see WAKE_TRIGGERS)."""

    delay: float
    wake: tuple[str, ...]
    timer: float = 0.0
    voltage_rise: float = 0.0


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") or "0"


def status_frame(seq: int) -> Frame:
    return Frame(seq, STATUS)


def heartbeat_frame(seq: int, timeout: float) -> Frame:
    return Frame(seq, HEARTBEAT, (("t", str(round(timeout))),))


def sleep_frame(seq: int, request: SleepRequest) -> Frame:
    unknown = set(request.wake) - set(WAKE_TRIGGERS)
    if unknown or not request.wake:
        raise McuProtocolError(f"wake triggers must be some of {', '.join(WAKE_TRIGGERS)}, "
                               f"got {list(request.wake)}")
    fields = [("delay", str(round(request.delay))), ("wake", ",".join(request.wake))]
    if "timer" in request.wake:
        fields.append(("timer", str(round(request.timer))))
    if "voltage_rise" in request.wake:
        fields.append(("rise", _number(request.voltage_rise)))
    return Frame(seq, SLEEP, tuple(fields))


def hibernate_frame(seq: int, delay: float) -> Frame:
    return Frame(seq, HIBERNATE, (("delay", str(round(delay))),))


def _float(frame: Frame, key: str) -> float:
    raw = frame.require(key)
    try:
        return float(raw)
    except ValueError:
        raise McuProtocolError(f"the MCU sent {key}={raw!r}, not a number") from None


def parse_status(frame: Frame) -> McuStatus:
    """The fields of an ``OK`` reply to STATUS."""
    ignition = frame.require("ign")
    if ignition not in ("0", "1"):
        raise McuProtocolError(f"the MCU sent ign={ignition!r}, not 0 or 1")
    return McuStatus(_float(frame, "v"), ignition == "1", _float(frame, "up"),
                     frame.get("wake") or "unknown", _float(frame, "wd"))


def parse_heartbeat(frame: Frame) -> float:
    """The watchdog timeout the MCU armed (0 = disarmed)."""
    return _float(frame, "t")

