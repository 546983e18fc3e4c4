"""What the ELM327 interpreter asks of the CAN side, and the timing rules it follows (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

PROTOCOL_NAMES: dict[str, str] = {
    "1": "SAE J1850 PWM",
    "2": "SAE J1850 VPW",
    "3": "ISO 9141-2",
    "4": "ISO 14230-4 (KWP 5BAUD)",
    "5": "ISO 14230-4 (KWP FAST)",
    "6": "ISO 15765-4 (CAN 11/500)",
    "7": "ISO 15765-4 (CAN 29/500)",
    "8": "ISO 15765-4 (CAN 11/250)",
    "9": "ISO 15765-4 (CAN 29/250)",
    "A": "SAE J1939 (CAN 29/250)",
    "B": "USER1 CAN (11* /125)",
    "C": "USER2 CAN (11* /50)",
}
CAN_11BIT = {"6": 500_000, "8": 250_000, "B": 125_000, "C": 50_000}
CAN_29BIT = {"7": 500_000, "9": 250_000, "A": 250_000}
ISO_INIT = {"3", "4", "5"}  # K-line protocols with a bus initialisation

CAN_ERROR = "CAN ERROR"
BUS_INIT_ERROR = "BUS INIT: ...ERROR"


@dataclass(frozen=True, slots=True)
class CanFrame:
    """One classic CAN frame as the adapter saw it."""

    arbitration_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class LinkRequest:
    """One OBD request the adapter puts on the vehicle bus."""

    protocol: str  # ELM327 protocol number to use ("6", ...)
    header: int  # CAN id to send to (0x7DF functional, 0x7E0.. physical)
    data: bytes  # the CAN frame's data bytes, PCI included
    timeout: float  # seconds, from AT ST
    adaptive: int  # AT AT mode 0, 1 or 2
    max_responses: int | None = None  # the count digit after the request ("010C1")
    receive_filter: int | None = None  # AT CRA; None accepts 0x7E8-0x7EF
    wait_for_responses: bool = True  # AT R0 sends and returns at once


@dataclass(frozen=True, slots=True)
class LinkResult:
    """Frames received in arrival order, or the adapter's error text."""

    frames: tuple[CanFrame, ...] = ()
    error: str | None = None


class Link(Protocol):
    """The adapter's CAN side: send one request, gather the answers."""

    def exchange(self, request: LinkRequest) -> LinkResult: ...


def protocol_mismatch(requested: str, bus: str) -> LinkResult | None:
    """What the adapter sees when it speaks `requested` on a bus running `bus`; None if they match."""
    if requested == bus:
        return None
    if requested in ISO_INIT:
        return LinkResult(error=BUS_INIT_ERROR)
    bus_rate = CAN_11BIT.get(bus) or CAN_29BIT.get(bus)
    rate = CAN_11BIT.get(requested) or CAN_29BIT.get(requested)
    if rate is not None and rate != bus_rate:
        return LinkResult(error=CAN_ERROR)  # wrong bit rate: the adapter's frames collide with errors
    return LinkResult()  # right bit rate but nobody answers these ids, or a J1850 bus that is absent


def is_accepted(arbitration_id: int, receive_filter: int | None) -> bool:
    """The adapter's receive filter: ISO 15765-4 response ids unless AT CRA says otherwise."""
    if receive_filter is not None:
        return arbitration_id == receive_filter
    return 0x7E8 <= arbitration_id <= 0x7EF


def adaptive_timeout(mode: int, timeout: float, typical_latency: float | None) -> float:
    """How long to wait for the next frame.

    AT0 always waits the full AT ST time. AT1 and AT2 shorten it towards a multiple of the
    response times seen so far (AT2 more aggressively), never below a floor and never
    above AT ST; with nothing measured yet they wait the full time, like the ELM327.
    """
    if mode == 0 or typical_latency is None:
        return timeout
    factor, floor = (3.0, 0.030) if mode == 1 else (2.0, 0.015)
    return min(timeout, max(floor, factor * typical_latency))
