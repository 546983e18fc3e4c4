"""An ELM327 reply as text lines -> the vehicle frames in it, or the typed error it reports (pure).

The adapter answers a request with hex frames (``7E8 04 41 0C 0C 30`` with headers on),
with a status line (``NO DATA``, ``CAN ERROR`` ...), or with both, possibly behind junk
bytes from a noisy line. This module sorts that out without any I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from autopi_agent.obd.errors import (
    ObdBadResponse,
    ObdBusError,
    ObdError,
    ObdNoData,
    ObdUnableToConnect,
    ObdUnsupported,
)

__all__ = ["ElmReply", "is_response_pending", "parse_reply", "raise_for_status", "split_lines"]

# A frame as printed with headers and spaces on: an 11-bit id (3 digits) or the first byte of
# a 29-bit id / legacy header, then byte pairs. Anchored at the end of a line, so junk glued to
# the front of the line is skipped (an 11-bit id cannot be confused with a byte pair).
_FRAME = re.compile(r"(?:[0-9A-F]{3}|[0-9A-F]{2})(?: [0-9A-F]{2})+$")
# Lines that are progress reports, not answers.
_PROGRESS = ("SEARCHING...", "BUS INIT: ...OK", "BUS INIT: OK", "OK")

_STATUS: tuple[tuple[str, type[ObdError], str], ...] = (
    ("NO DATA", ObdNoData,
     "no ECU answered (NO DATA): the car may not support it, or the ECU is asleep"),
    ("UNABLE TO CONNECT", ObdUnableToConnect,
     "the adapter could not reach the car (UNABLE TO CONNECT): is the ignition on?"),
    ("CAN ERROR", ObdBusError,
     "the CAN bus failed (CAN ERROR): wrong protocol or bit rate, ignition off, or a bus fault"),
    ("BUS INIT", ObdBusError,
     "the K-line bus did not initialise (BUS INIT: ...ERROR): wrong protocol or ignition off"),
    ("BUS ERROR", ObdBusError, "the vehicle bus reported an error (BUS ERROR)"),
    ("BUS BUSY", ObdBusError, "the vehicle bus is too busy (BUS BUSY)"),
    ("FB ERROR", ObdBusError, "the bus feedback was wrong (FB ERROR): check the wiring"),
    ("DATA ERROR", ObdBusError, "a frame failed its checksum (DATA ERROR)"),
    ("RX ERROR", ObdBusError, "a frame was received damaged (RX ERROR)"),
    ("BUFFER FULL", ObdBusError, "the adapter's receive buffer overflowed (BUFFER FULL)"),
    ("STOPPED", ObdBusError, "the adapter stopped the request (STOPPED): it was interrupted"),
    ("LV RESET", ObdBusError, "the adapter reset itself on low voltage (LV RESET)"),
    ("ACT ALERT", ObdBusError, "the adapter saw no bus activity and is going idle (ACT ALERT)"),
    ("ERR", ObdBusError, "the adapter reported an internal error"),
    ("?", ObdUnsupported, "the adapter did not understand the command (?)"),
)


@dataclass(frozen=True, slots=True)
class ElmReply:
    """What one reply held: ``frames`` as hex without spaces, in arrival order; ``status``
    the adapter's status lines; ``junk`` unreadable bytes that were skipped; ``pending``
    how many 'response pending' (7F xx 78) frames were dropped. Echo and progress lines
    (``SEARCHING...``) are left out."""

    frames: tuple[str, ...]
    status: tuple[str, ...] = ()
    junk: tuple[str, ...] = ()
    pending: int = 0

    @property
    def garbled(self) -> bool:
        """True when junk bytes were skipped (a noisy line or a wrong baud rate)."""
        return bool(self.junk)


def split_lines(raw: bytes) -> list[str]:
    """Reply bytes (up to, without, the prompt) as stripped non-empty lines, one char a byte."""
    text = raw.replace(b"\x00", b"").decode("latin-1")
    return [line.strip() for line in re.split(r"[\r\n]", text) if line.strip()]


def is_response_pending(frame: str) -> bool:
    """True for a CAN single frame carrying ``7F <sid> 78`` (the ECU asks for more time)."""
    body = _can_payload(frame)
    return len(body) >= 3 and body[0] == 0x7F and body[2] == 0x78


def _can_payload(frame: str) -> bytes:
    """The data after an 11-bit id and PCI byte of a single frame; empty for anything else."""
    if len(frame) < 5 or len(frame) % 2 == 0:
        return b""  # 29-bit and legacy frames have an even number of digits
    try:
        data = bytes.fromhex(frame[3:])
    except ValueError:
        return b""
    if not data or data[0] >> 4 != 0:
        return b""
    return data[1 : 1 + (data[0] & 0x0F)]


def _frame_in(line: str) -> tuple[str, str] | None:
    """The frame at the end of ``line`` (hex without spaces) and the junk before it."""
    match = _FRAME.search(line)
    if match is None:
        return None
    return match.group(0).replace(" ", ""), line[: match.start()]


def _status_in(line: str) -> str | None:
    for text, _, _ in _STATUS:
        if text == "?":
            if line.endswith("?"):
                return "?"
        elif text in line:
            return text
    return None


def parse_reply(lines: list[str], *, echo: str = "") -> ElmReply:
    """Sort reply ``lines`` into frames, status lines and skipped lines (``echo`` is the
    command sent, in case the adapter echoes it)."""
    frames: list[str] = []
    status: list[str] = []
    junk: list[str] = []
    pending = 0
    for line in lines:
        if line.replace(" ", "") == echo.replace(" ", "") or line in _PROGRESS:
            continue
        found_frame = _frame_in(line)
        if found_frame is not None:
            frame, before = found_frame
            if before.strip():
                junk.append(before)
            if is_response_pending(frame):
                pending += 1
            else:
                frames.append(frame)
            continue
        found_status = _status_in(line)
        if found_status is not None:
            status.append(found_status)
        else:
            junk.append(line)
    return ElmReply(tuple(frames), tuple(status), tuple(junk), pending)


def raise_for_status(reply: ElmReply, what: str) -> None:
    """Raise the typed error for a reply without frames; ``what`` names the request."""
    if reply.frames:
        return
    for text, error, message in _STATUS:
        if text in reply.status:
            raise error(f"{what}: {message}")
    if reply.garbled:
        raise ObdBadResponse(f"{what}: the adapter sent only unreadable bytes "
                          f"({' | '.join(reply.junk)[:80]!r}): check the baud rate and wiring")
    raise ObdNoData(f"{what}: the adapter answered nothing (an empty reply)")
