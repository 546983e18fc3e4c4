"""Readings as job returns: python-OBD's decoded values (pint quantities, objects) made plain."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from obd import Unit
from obd.utils import BitArray

__all__ = ["Reading", "plain", "unit_of"]

# pint's short symbols, where python-OBD's own unit definitions print oddly.
_UNIT_NAMES = {"GPS": "g/s", "LPH": "L/h", "kph": "km/h", "deg": "°", "PPM": "ppm",
               "count": "count", "ratio": "ratio"}


def unit_of(value: Any) -> str | None:
    """The unit of a pint quantity as a short symbol (``rpm``, ``km/h``, ``°C``), else None."""
    if isinstance(value, Unit.Quantity):
        symbol = f"{value.units:~}"
        return _UNIT_NAMES.get(symbol, symbol)
    return None


def plain(value: Any) -> Any:
    """``value`` as JSON/msgpack-friendly data: numbers, strings, lists and dicts."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Unit.Quantity):
        return plain(float(value.magnitude))
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex().upper()
    if isinstance(value, BitArray):
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if hasattr(value, "__dict__"):  # python-OBD's Status, StatusTest, Monitor objects
        return {key: plain(item) for key, item in vars(value).items() if not key.startswith("_")}
    return str(value)


@dataclass(frozen=True, slots=True)
class Reading:
    """One decoded answer: ``value`` in ``unit``, ``raw`` the answering messages' data bytes
    as hex (service byte first), ``ecus`` who answered, ``timestamp`` seconds since the epoch."""

    command: str
    value: Any
    unit: str | None
    raw: tuple[str, ...]
    ecus: tuple[str, ...]
    timestamp: float
    mode: int | None = None
    pid: int | None = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The reading as a job return."""
        out: dict[str, Any] = {
            "command": self.command, "value": self.value, "unit": self.unit,
            "raw": list(self.raw), "ecus": list(self.ecus), "timestamp": self.timestamp,
        }
        if self.mode is not None:
            out["mode"] = f"{self.mode:02X}"
        if self.pid is not None:
            out["pid"] = f"{self.pid:02X}"
        if self.notes:
            out["notes"] = list(self.notes)
        return out
