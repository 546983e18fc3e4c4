"""Faults that can be switched on and off while the car runs: what each one is, parsed from words."""

from __future__ import annotations

import enum
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from hil.errors import FaultError


class FaultKind(enum.StrEnum):
    SILENT_ECU = "silent-ecu"  # the ECU answers nothing (its CAN controller still acknowledges)
    SLOW_ECU = "slow-ecu"  # the ECU answers after `delay` seconds
    NEGATIVE_RESPONSE = "negative-response"  # the ECU answers 7F <service> <nrc>
    TRUNCATED_FRAME = "truncated-frame"  # the answer's first CAN frame is cut after 2 payload bytes
    GARBAGE = "garbage"  # junk bytes on the adapter's serial line before each answer
    ADAPTER_UNPLUGGED = "adapter-unplugged"  # the adapter's port disappears (off = plugged back)
    BUS_OFF = "bus-off"  # the CAN controllers are bus-off: the adapter reports CAN ERROR


ECU_FAULTS = frozenset(
    {FaultKind.SILENT_ECU, FaultKind.SLOW_ECU, FaultKind.NEGATIVE_RESPONSE, FaultKind.TRUNCATED_FRAME}
)

FAULT_HELP: dict[FaultKind, str] = {
    FaultKind.SILENT_ECU: "ECU answers nothing [ecu=NAME] [service=HEX]",
    FaultKind.SLOW_ECU: "ECU answers late [delay=SECONDS, default 0.5] [ecu=NAME] [service=HEX]",
    FaultKind.NEGATIVE_RESPONSE: "ECU answers 7F <sid> <nrc> [nrc=HEX, default 22; 78 = pending, "
    "then the answer after delay] [delay=SECONDS] [ecu=NAME] [service=HEX]",
    FaultKind.TRUNCATED_FRAME: "ECU's answer frame announces its length but carries only 2 bytes "
    "[ecu=NAME] [service=HEX]",
    FaultKind.GARBAGE: "junk bytes before each adapter reply [count=N, default 16]",
    FaultKind.ADAPTER_UNPLUGGED: "adapter port disappears; 'off' plugs it back in",
    FaultKind.BUS_OFF: "CAN bus-off: no frame gets through, the adapter says CAN ERROR",
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One active fault with its parameters; `ecu`/`service` None means every one."""

    kind: FaultKind
    ecu: str | None = None
    service: int | None = None
    delay: float = 0.5
    nrc: int = 0x22
    count: int = 16

    def applies_to(self, ecu: str, service: int | None) -> bool:
        return (self.ecu is None or self.ecu == ecu) and (
            self.service is None or service is None or self.service == service
        )

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"fault": str(self.kind)}
        if self.kind in ECU_FAULTS:
            out["ecu"] = self.ecu or "all"
            if self.service is not None:
                out["service"] = f"{self.service:02X}"
        if self.kind in (FaultKind.SLOW_ECU, FaultKind.NEGATIVE_RESPONSE):
            out["delay"] = self.delay
        if self.kind is FaultKind.NEGATIVE_RESPONSE:
            out["nrc"] = f"{self.nrc:02X}"
        if self.kind is FaultKind.GARBAGE:
            out["count"] = self.count
        return out


def _hex_byte(key: str, value: str) -> int:
    try:
        number = int(value, 16)
    except ValueError as err:
        raise FaultError(f"{key}={value!r}: expected a hex byte such as 22") from err
    if not 0 <= number <= 0xFF:
        raise FaultError(f"{key}={value!r}: expected a hex byte 00..FF")
    return number


def _number(key: str, value: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except ValueError as err:
        raise FaultError(f"{key}={value!r}: expected a number") from err
    if not low <= number <= high:
        raise FaultError(f"{key}={value!r}: expected {low}..{high}")
    return number


def parse_kind(name: str) -> FaultKind:
    try:
        return FaultKind(name.lower())
    except ValueError as err:
        known = ", ".join(k.value for k in FaultKind)
        raise FaultError(f"unknown fault {name!r}; known faults: {known}") from err


def parse_fault(name: str, params: Mapping[str, str], ecus: tuple[str, ...] = ()) -> Fault:
    """Build a fault from its name and `key=value` parameters, checking every one."""
    kind = parse_kind(name)
    allowed = {"ecu", "service"} if kind in ECU_FAULTS else set()
    allowed |= {"delay"} if kind in (FaultKind.SLOW_ECU, FaultKind.NEGATIVE_RESPONSE) else set()
    allowed |= {"nrc"} if kind is FaultKind.NEGATIVE_RESPONSE else set()
    allowed |= {"count"} if kind is FaultKind.GARBAGE else set()
    unknown = set(params) - allowed
    if unknown:
        raise FaultError(f"fault {kind} takes {sorted(allowed) or 'no parameters'}, not {sorted(unknown)}")
    ecu = params.get("ecu")
    if ecu == "all":
        ecu = None
    if ecu is not None and ecus and ecu not in ecus:
        raise FaultError(f"ecu={ecu!r}: this car's ECUs are {', '.join(ecus)} (or all)")
    default_delay = 0.1 if kind is FaultKind.NEGATIVE_RESPONSE else 0.5
    return Fault(
        kind=kind,
        ecu=ecu,
        service=_hex_byte("service", params["service"]) if "service" in params else None,
        delay=_number("delay", params["delay"], 0.0, 60.0) if "delay" in params else default_delay,
        nrc=_hex_byte("nrc", params["nrc"]) if "nrc" in params else 0x22,
        count=int(_number("count", params["count"], 1, 4096)) if "count" in params else 16,
    )


class FaultSet:
    """The faults active on one car (at most one per kind); read from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[FaultKind, Fault] = {}

    def set(self, fault: Fault) -> None:
        with self._lock:
            self._active[fault.kind] = fault

    def clear(self, kind: FaultKind) -> bool:
        """Switch one fault off; True if it was on."""
        with self._lock:
            return self._active.pop(kind, None) is not None

    def clear_all(self) -> None:
        with self._lock:
            self._active.clear()

    def get(self, kind: FaultKind) -> Fault | None:
        with self._lock:
            return self._active.get(kind)

    def active(self) -> tuple[Fault, ...]:
        with self._lock:
            return tuple(self._active.values())

    def for_ecu(self, kind: FaultKind, ecu: str, service: int | None) -> Fault | None:
        """The fault of this kind if it is on and applies to this ECU and service."""
        fault = self.get(kind)
        return fault if fault is not None and fault.applies_to(ecu, service) else None
