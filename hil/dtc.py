"""Diagnostic trouble codes: SAE J2012 text <-> the two raw bytes of SAE J1979, and ECU DTC memory."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

_SYSTEMS = "PCBU"
_DTC_RE = re.compile(r"^[PCBU][0-3][0-9A-F]{3}$")


def is_dtc(code: str) -> bool:
    """True for a well-formed five-character code such as `P0301`."""
    return bool(_DTC_RE.match(code))


def encode_dtc(code: str) -> bytes:
    """`P0301` -> b'\\x03\\x01': system in bits 7-6, first digit in bits 5-4, then 3 hex digits."""
    code = code.upper()
    if not is_dtc(code):
        raise ValueError(f"not a DTC: {code!r} (expected a letter P/C/B/U, a digit 0-3, 3 hex digits)")
    value = (_SYSTEMS.index(code[0]) << 14) | (int(code[1]) << 12) | int(code[2:], 16)
    return value.to_bytes(2, "big")


def decode_dtc(raw: bytes) -> str:
    """The inverse of `encode_dtc`."""
    if len(raw) != 2:
        raise ValueError(f"a DTC is two bytes, got {len(raw)}")
    value = int.from_bytes(raw, "big")
    return f"{_SYSTEMS[value >> 14]}{(value >> 12) & 0x3}{value & 0xFFF:03X}"


@dataclass(frozen=True, slots=True)
class DtcMemory:
    """What one ECU remembers about faults; service 04 returns a cleared copy.

    Times are scenario seconds and distances odometer kilometres, so the "since
    cleared" and "with MIL on" counters follow from the current time and odometer.
    """

    stored: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    permanent: tuple[str, ...] = ()
    mil: bool = False
    monitors_complete: bool = True
    cleared_at: float = 0.0
    odometer_at_clear: float = 0.0
    mil_on_at: float = 0.0
    odometer_at_mil_on: float = 0.0
    warmups_since_clear: int = 0

    def cleared(self, now: float, odometer: float) -> DtcMemory:
        """After service 04: stored and pending codes gone, MIL off, monitors not ready.

        Permanent codes stay: only the ECU's own monitor passing can erase them.
        """
        return replace(
            self,
            stored=(),
            pending=(),
            mil=False,
            monitors_complete=False,
            cleared_at=now,
            odometer_at_clear=odometer,
            warmups_since_clear=0,
        )
