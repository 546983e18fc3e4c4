"""SAE J1979 services an ECU answers: 01, 03, 04, 07, 09 and 0A over ISO 15765-4 (pure).

`respond` takes a request payload (without ISO-TP framing) and a `Snapshot`, and returns
the response payload, or None when the ECU stays silent. Silence follows J1979: nothing
for an unsupported PID, and no negative response to a functional (broadcast) request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hil.dtc import encode_dtc
from hil.pids import PIDS, bitmap, supported_set
from hil.signals import Snapshot

NRC_SERVICE_NOT_SUPPORTED = 0x11
NRC_INCORRECT_LENGTH = 0x13
NRC_CONDITIONS_NOT_CORRECT = 0x22
NRC_REQUEST_OUT_OF_RANGE = 0x31
NRC_RESPONSE_PENDING = 0x78

MAX_PIDS_PER_REQUEST = 6
POSITIVE_OFFSET = 0x40


@dataclass(frozen=True, slots=True)
class Reply:
    """An ECU's answer; `clear_dtcs` asks the owner of the DTC memory to clear it (service 04)."""

    payload: bytes | None
    clear_dtcs: bool = False


def negative(service: int, nrc: int) -> bytes:
    """The negative response `7F <service> <nrc>`."""
    return bytes([0x7F, service, nrc])


def served_pids(snapshot: Snapshot) -> frozenset[int]:
    """Service 01 PIDs this ECU answers, bitmaps included."""
    return supported_set(pid for pid in snapshot.ecu.pids if pid in PIDS)


def service_01(args: bytes, snapshot: Snapshot) -> bytes | None:
    if not 1 <= len(args) <= MAX_PIDS_PER_REQUEST:
        return None
    served = served_pids(snapshot)
    out = bytearray([0x41])
    for pid in args:
        if pid not in served:
            continue
        data = bitmap(pid, served) if pid % 0x20 == 0 else PIDS[pid].encode(snapshot)
        out += bytes([pid]) + data
    return bytes(out) if len(out) > 1 else None


def dtc_list(service: int, codes: tuple[str, ...]) -> bytes:
    """Services 03/07/0A on CAN: the count byte, then two bytes per code."""
    return bytes([service + POSITIVE_OFFSET, len(codes)]) + b"".join(encode_dtc(c) for c in codes)


def ecu_name_bytes(name: str) -> bytes:
    """Infotype 0A: 4-byte acronym, '-', 15-byte name, each padded with NUL (20 bytes)."""
    acronym, _, text = name.partition("-")
    return acronym.encode("ascii")[:4].ljust(4, b"\x00") + b"-" + text.encode("ascii")[:15].ljust(15, b"\x00")


def served_infotypes(snapshot: Snapshot) -> frozenset[int]:
    ecu = snapshot.ecu
    types = {0x0A}
    if ecu.has_vin:
        types.add(0x02)
    if ecu.calibration_ids:
        types.add(0x04)
    if ecu.cvns:
        types.add(0x06)
    return supported_set(types)


def service_09(args: bytes, snapshot: Snapshot) -> bytes | None:
    if len(args) != 1:
        return None
    infotype = args[0]
    served = served_infotypes(snapshot)
    if infotype not in served:
        return None
    ecu = snapshot.ecu
    head = bytes([0x49, infotype])
    if infotype % 0x20 == 0:
        return head + bitmap(infotype, served)
    if infotype == 0x02:
        return head + b"\x01" + snapshot.vehicle.vin.encode("ascii")
    if infotype == 0x04:
        ids = b"".join(c.encode("ascii")[:16].ljust(16, b"\x00") for c in ecu.calibration_ids)
        return head + bytes([len(ecu.calibration_ids)]) + ids
    if infotype == 0x06:
        return head + bytes([len(ecu.cvns)]) + b"".join(ecu.cvns)
    return head + b"\x01" + ecu_name_bytes(ecu.ecu_name)


def _dtcs(service: int, pick: Callable[[Snapshot], tuple[str, ...]]) -> Handler:
    def handle(args: bytes, snapshot: Snapshot, functional: bool) -> Reply:
        if args:
            return Reply(None if functional else negative(service, NRC_INCORRECT_LENGTH))
        return Reply(dtc_list(service, pick(snapshot)))

    return handle


def _service_01(args: bytes, snapshot: Snapshot, functional: bool) -> Reply:
    return Reply(service_01(args, snapshot))


def _service_04(args: bytes, snapshot: Snapshot, functional: bool) -> Reply:
    if args:
        return Reply(None if functional else negative(0x04, NRC_INCORRECT_LENGTH))
    return Reply(b"\x44", clear_dtcs=True)


def _service_09(args: bytes, snapshot: Snapshot, functional: bool) -> Reply:
    return Reply(service_09(args, snapshot))


Handler = Callable[[bytes, Snapshot, bool], Reply]

SERVICES: dict[int, Handler] = {
    0x01: _service_01,
    0x03: _dtcs(0x03, lambda s: s.dtcs.stored),
    0x04: _service_04,
    0x07: _dtcs(0x07, lambda s: s.dtcs.pending),
    0x09: _service_09,
    0x0A: _dtcs(0x0A, lambda s: s.dtcs.permanent),
}


def respond(request: bytes, snapshot: Snapshot, *, functional: bool) -> Reply:
    """Answer one request payload as the ECU described by `snapshot`."""
    if not request:
        return Reply(None)
    handler = SERVICES.get(request[0])
    if handler is None:
        return Reply(None if functional else negative(request[0], NRC_SERVICE_NOT_SUPPORTED))
    return handler(request[1:], snapshot, functional)
