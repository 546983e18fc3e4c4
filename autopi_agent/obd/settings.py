"""The ``obd:`` section of the agent config: its schema and the settings value built from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopi_agent.obd.errors import ObdConfigError
from autopi_common.config import ConfigError, Field, positive, validate

__all__ = ["AUTO", "BAUDRATES", "OBD_SCHEMA", "PROTOCOLS", "ObdSettings", "normalise_protocol"]

AUTO = "auto"
# ELM327 protocol numbers (ATSP/ATTP): 1-5 J1850/K-line, 6-9 CAN (ISO 15765-4), A J1939.
PROTOCOLS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "A")
# The order python-OBD tries: the two power-on defaults first, then fastest to slowest.
BAUDRATES = (38400, 9600, 230400, 115200, 57600, 19200)


def normalise_protocol(value: object) -> str:
    """``auto`` or an ELM protocol number as a capital hex digit; raises ObdConfigError."""
    text = str(value).strip().upper()
    if text in ("AUTO", "0", ""):
        return AUTO
    if text in PROTOCOLS:
        return text
    raise ObdConfigError(f"unknown OBD protocol {value!r}: use auto or an ELM327 protocol "
                         f"number {', '.join(PROTOCOLS)} (6 = CAN 11-bit 500 kbit/s)")


def _protocol(value: str) -> str | None:
    try:
        normalise_protocol(value)
    except ObdConfigError:
        return f"auto or an ELM327 protocol number ({', '.join(PROTOCOLS)})"
    return None


def _baudrate(value: int) -> str | None:
    return None if value == 0 or value >= 300 else "0 (detect) or a baud rate such as 38400"


OBD_SCHEMA: tuple[Field, ...] = (
    Field("port", "str", "",
          "The adapter: a serial device (/dev/serial0 on the dongle, /dev/ttyUSB0), a pty, "
          "or socket://HOST:PORT for a Wi-Fi adapter. Empty (the default) turns OBD off."),
    Field("baudrate", "int", 0,
          "Serial speed; 0 detects it (38400, 9600, 230400, 115200, 57600, 19200).",
          check=_baudrate),
    Field("protocol", "str", AUTO,
          "auto, or an ELM327 protocol number 1-9/A tried first (falls back to auto).",
          check=_protocol),
    Field("timeout", "float", 5.0,
          "Seconds one request to the adapter may take: the bound on a silent adapter.",
          check=positive),
    Field("connect_timeout", "float", 30.0,
          "Seconds a connection attempt may take (adapter reset, protocol search).",
          check=positive),
    Field("fast", "bool", True,
          "Tell the adapter how many answers to expect, so it does not wait for more."),
    Field("reconnect_min", "float", 1.0,
          "Seconds before the first reconnection attempt after the adapter is lost.",
          check=positive),
    Field("reconnect_max", "float", 60.0,
          "Longest wait between reconnection attempts (the wait doubles up to it).",
          check=positive),
)


@dataclass(frozen=True, slots=True)
class ObdSettings:
    """Validated ``obd:`` settings (see OBD_SCHEMA for each field's meaning)."""

    port: str = ""
    baudrate: int = 0
    protocol: str = AUTO
    timeout: float = 5.0
    connect_timeout: float = 30.0
    fast: bool = True
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0

    @classmethod
    def from_opts(cls, section: Mapping[str, Any] | None) -> ObdSettings:
        """Settings from the agent config's ``obd`` dict (validated here if it was not yet)."""
        try:
            values = validate(dict(section or {}), OBD_SCHEMA, source="agent config",
                              base_dir=Path.cwd(), prefix="obd.")
        except ConfigError as err:
            raise ObdConfigError(str(err)) from err
        values["protocol"] = normalise_protocol(values["protocol"])
        values["port"] = values["port"].strip()
        if values["reconnect_max"] < values["reconnect_min"]:
            values["reconnect_max"] = values["reconnect_min"]
        return cls(**values)

    @property
    def enabled(self) -> bool:
        """False when no port is configured."""
        return bool(self.port)

    @property
    def is_url(self) -> bool:
        """True for a pyserial URL such as socket://host:port (no baud rate, no device)."""
        return "://" in self.port
