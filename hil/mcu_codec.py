"""The power MCU's line protocol, MCU side (pure; the agent has its own codec, see README).

A frame is ``$<SEQ> <VERB>[ key=value]...*<CK>`` + CR LF: SEQ two hex digits (00 for the
MCU's own messages), CK two hex digits, the XOR of the bytes between ``$`` and ``*``.
Anything else on the line (noise, bad checksums, over-long runs) is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LINE = 120
_LINE = re.compile(rb"\$([0-9A-F]{2}) ([A-Z]+)((?: [a-z0-9_]+=[!-#%-)+-<>-~]+)*)\*([0-9A-F]{2})")


@dataclass(frozen=True, slots=True)
class McuFrame:
    """A request or reply: sequence number, verb, fields in order."""

    seq: int
    verb: str
    fields: tuple[tuple[str, str], ...] = ()

    def field(self, key: str, default: str | None = None) -> str | None:
        return dict(self.fields).get(key, default)


def xor(body: bytes) -> int:
    out = 0
    for byte in body:
        out ^= byte
    return out


def parse(line: bytes) -> McuFrame | None:
    """The frame on ``line``, or None when it is not a valid one."""
    line = line.strip(b"\r\n")
    match = _LINE.fullmatch(line) if len(line) <= MAX_LINE else None
    if match is None or xor(line[1 : line.rindex(b"*")]) != int(match[4], 16):
        return None
    pairs = [item.split("=", 1) for item in match[3].decode().split()]
    return McuFrame(int(match[1], 16), match[2].decode(), tuple((k, v) for k, v in pairs))


def render(frame: McuFrame) -> bytes:
    """The frame as a CR LF terminated line."""
    body = " ".join([f"{frame.seq:02X}", frame.verb, *(f"{k}={v}" for k, v in frame.fields)])
    raw = body.encode("ascii")
    return b"$" + raw + b"*" + f"{xor(raw):02X}".encode("ascii") + b"\r\n"


class Lines:
    """Bytes in, lines out (LF ends a line; an over-long run is dropped whole)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._overflow = False

    def feed(self, data: bytes) -> list[bytes]:
        out = []
        for byte in data:
            if byte == 0x0A:
                if not self._overflow:
                    out.append(bytes(self._buffer))
                self._buffer.clear()
                self._overflow = False
            elif len(self._buffer) <= MAX_LINE:
                self._buffer.append(byte)
            else:
                self._overflow = True
        return out
