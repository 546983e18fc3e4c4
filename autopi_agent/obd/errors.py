"""Errors of the agent's OBD-II support: each names its kind, its job retcode and what to do.

ObdError                                                              kind              retcode
 ├── ObdConfigError (ValueError)      bad obd settings or arguments    invalid              40
 ├── ObdUnsupported (LookupError)     the car or adapter lacks it      unsupported          41
 ├── ObdNoData (LookupError)          NO DATA: no ECU answered         no_data              42
 ├── ObdNegativeResponse              an ECU refused: 7F <sid> <NRC>   negative_response    43
 ├── ObdBusError                      CAN ERROR, BUS INIT ... ERROR    bus_error            44
 │    └── ObdBadResponse              truncated or garbled reply       bad_response         45
 ├── ObdUnableToConnect (ConnectionError)  adapter fine, car silent    unable_to_connect    46
 ├── ObdAdapterGone (ConnectionError)      no adapter on the port      adapter_gone         47
 │    └── ObdAdapterBusy              another process has it open      adapter_busy         49
 └── ObdTimeout (TimeoutError)        no answer within the bound       timeout              48

Retcodes 40-49 are unused by Salt (salt/defaults/exitcodes.py), so a master or a script can
tell the kinds apart from the job's retcode alone; ``kind`` is the same fact as a word.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, TypeVar

__all__ = [
    "NRC_NAMES",
    "ObdAdapterBusy",
    "ObdAdapterGone",
    "ObdBadResponse",
    "ObdBusError",
    "ObdConfigError",
    "ObdError",
    "ObdNegativeResponse",
    "ObdNoData",
    "ObdTimeout",
    "ObdUnableToConnect",
    "ObdUnsupported",
    "restated",
]

E = TypeVar("E", bound="ObdError")

# ISO 14229-1 / ISO 15765-4 negative response codes an OBD ECU may send.
NRC_NAMES: dict[int, str] = {
    0x10: "general reject",
    0x11: "service not supported",
    0x12: "sub-function not supported",
    0x13: "incorrect message length or invalid format",
    0x21: "busy, repeat request",
    0x22: "conditions not correct",
    0x31: "request out of range",
    0x33: "security access denied",
    0x78: "response pending",
}


class ObdError(Exception):
    """Root of every OBD error; ``kind`` and ``retcode`` say which one it is."""

    kind: ClassVar[str] = "error"
    retcode: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        """The error as a job return entry: ``{"error": kind, "message": text}``."""
        return {"error": self.kind, "message": str(self)}


class ObdConfigError(ObdError, ValueError):
    """The obd settings or a function's arguments are invalid (unknown command, bad PID)."""

    kind = "invalid"
    retcode = 40


class ObdUnsupported(ObdError, LookupError):
    """The car does not list the PID as supported, or the adapter lacks the command."""

    kind = "unsupported"
    retcode = 41


class ObdNoData(ObdError, LookupError):
    """The adapter sent the request but no ECU answered (``NO DATA``)."""

    kind = "no_data"
    retcode = 42


class ObdNegativeResponse(ObdError):
    """An ECU refused the request with ``7F <service> <NRC>``."""

    kind = "negative_response"
    retcode = 43

    def __init__(self, message: str, *, service: int = 0, nrc: int = 0) -> None:
        super().__init__(message)
        self.service = service
        self.nrc = nrc

    @property
    def nrc_name(self) -> str:
        """The NRC in words, e.g. ``conditions not correct``."""
        return NRC_NAMES.get(self.nrc, "manufacturer specific")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "service": f"{self.service:02X}", "nrc": f"{self.nrc:02X}",
                "nrc_name": self.nrc_name}


class ObdBusError(ObdError):
    """The vehicle bus failed: ``CAN ERROR``, ``BUS INIT: ...ERROR``, ``BUS ERROR`` ..."""

    kind = "bus_error"
    retcode = 44


class ObdBadResponse(ObdBusError):
    """The reply was shorter than it announced, or the adapter line carried garbled bytes."""

    kind = "bad_response"
    retcode = 45


class ObdUnableToConnect(ObdError, ConnectionError):
    """The adapter answers but the car does not (ignition off, wrong protocol, no ECU)."""

    kind = "unable_to_connect"
    retcode = 46


class ObdAdapterGone(ObdError, ConnectionError):
    """No adapter on the configured port: missing device, unplugged, I/O error."""

    kind = "adapter_gone"
    retcode = 47


class ObdAdapterBusy(ObdAdapterGone):
    """Another process (the agent daemon, when this is a local call) has the adapter open."""

    kind = "adapter_busy"
    retcode = 49


class ObdTimeout(ObdError, TimeoutError):
    """The adapter (or the connection owner) did not answer within the bound."""

    kind = "timeout"
    retcode = 48


def restated(error: E, message: str) -> E:
    """A copy of ``error`` (same class and fields) with a new message."""
    again = copy.copy(error)
    again.args = (message,)
    return again
