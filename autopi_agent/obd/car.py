"""What can be asked of a connected car: readings, VIN, DTCs, battery, protocol, raw frames.

Each function runs on the connection owner's thread with the session and the request's
deadline: ``owner.call(lambda session, deadline: read_vin(session, deadline))``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import obd
from obd import OBDCommand
from obd.decoders import dtc as decode_dtcs
from obd.protocols import ECU
from obd.protocols.protocol import Message

from autopi_agent.obd.commands import GET_PERMANENT_DTC, supported_commands
from autopi_agent.obd.errors import (
    ObdBadResponse,
    ObdConfigError,
    ObdError,
    ObdNegativeResponse,
    ObdNoData,
    ObdUnsupported,
    restated,
)
from autopi_agent.obd.frames import Answer, vin_from_payload
from autopi_agent.obd.monitor import monitor_frames
from autopi_agent.obd.session import Deadline, Session
from autopi_agent.obd.settings import AUTO, normalise_protocol
from autopi_agent.obd.values import Reading, plain, unit_of

__all__ = ["adapter_voltage", "clear_dtcs", "decoded", "ignition", "list_commands", "monitor",
           "query", "read_dtcs", "read_vin", "set_protocol"]

_VOLTS = re.compile(r"(\d{1,2}(?:\.\d+)?)\s*V?$", re.IGNORECASE)
_DTC_SERVICES = (("stored", obd.commands.GET_DTC), ("pending", obd.commands.GET_CURRENT_DTC),
                 ("permanent", GET_PERMANENT_DTC))


def _vin_value(messages: list[Message]) -> str:
    return vin_from_payload(bytes(messages[0].data))


# Decoders used instead of python-OBD's where it gets the value wrong.
_DECODERS: dict[bytes, Callable[[list[Message]], Any]] = {b"0902": _vin_value}


def query(session: Session, deadline: Deadline, command: OBDCommand, *,
          header: str | None = None, force: bool = False, decode: bool = True) -> Reading:
    """One command's checked, decoded reading (raw hex when ``decode`` is False)."""
    what = f"{command.name} ({command.command.decode()})"
    if not force and not session.supports(command):
        raise ObdUnsupported(f"{what}: this car does not list it as supported "
                             "(force=True sends it anyway)")
    if header is not None:  # one ECU was asked: its answer counts, whichever ECU it is
        command = command.clone()
        command.ecu = ECU.ALL
    answer = session.request(command, deadline.left(what), header=header, what=what)
    value, unit = decoded(command, answer, decode=decode, what=what)
    return Reading(command=command.name, value=value, unit=unit,
                   raw=tuple(bytes(m.data).hex().upper() for m in answer.messages),
                   ecus=session.ecus(answer.messages), timestamp=answer.received,
                   mode=command.mode, pid=command.pid, notes=answer.notes)


def decoded(command: OBDCommand, answer: Answer, *, decode: bool = True,
            what: str = "") -> tuple[Any, str | None]:
    """(value, unit) of a checked answer: decoded, or the raw hex when ``decode`` is False."""
    raw = [bytes(m.data).hex().upper() for m in answer.messages]
    if not decode:
        return (raw[0] if len(raw) == 1 else raw), None
    if command.command in _DECODERS:
        return _DECODERS[command.command](answer.messages), None
    # python-OBD's decoders trim the (already checked) messages in place: decode copies.
    value = command([_copy(m) for m in answer.messages]).value
    if value is None:
        raise ObdBadResponse(f"{what or command.name}: python-OBD could not decode "
                             f"{' '.join(raw)}")
    return plain(value), unit_of(value)


def _copy(message: Message) -> Message:
    twin = Message(message.frames)
    twin.ecu, twin.data = message.ecu, bytearray(message.data)
    return twin


def read_vin(session: Session, deadline: Deadline) -> dict[str, Any]:
    """The VIN from service 09 PID 02, decoded from its bytes (cached per connection)."""
    if session.vin is None:
        reading = query(session, deadline, obd.commands.VIN, force=True)
        session.vin = str(reading.value)
        session.vin_raw = reading.raw[0]
    return {"vin": session.vin, "raw": session.vin_raw}


def read_dtcs(session: Session, deadline: Deadline) -> dict[str, Any]:
    """Stored (03), pending (07) and permanent (0A) codes per ECU, and the MIL if known."""
    out: dict[str, Any] = {}
    unanswered = []
    for key, command in _DTC_SERVICES:
        try:
            answer = session.request(command, deadline.left(command.name))
        except (ObdNoData, ObdNegativeResponse):  # older cars have no service 0A
            unanswered.append(key)
            out[key] = []
            continue
        out[key] = [{"code": code, "description": text, "ecu": ecu}
                    for message, ecu in zip(answer.messages, session.ecus(answer.messages),
                                            strict=True)
                    for code, text in decode_dtcs([message])]
    if unanswered:
        out["unanswered"] = unanswered
    out.update(_mil(session, deadline))
    return out


def _mil(session: Session, deadline: Deadline) -> dict[str, Any]:
    status = obd.commands.STATUS
    if not session.supports(status):
        return {}
    try:
        value = session.request(status, deadline.left("STATUS"))
    except ObdError:
        return {}
    monitors = status(value.messages).value
    return {"mil": bool(monitors.MIL), "dtc_count": int(monitors.DTC_count)}


def clear_dtcs(session: Session, deadline: Deadline) -> dict[str, Any]:
    """Service 04: clear codes and freeze frames in every ECU that accepts it."""
    answer = session.request(obd.commands.CLEAR_DTC, deadline.left("CLEAR_DTC (04)"),
                             what="clearing DTCs (04)")
    out: dict[str, Any] = {"cleared": True, "ecus": list(session.ecus(answer.messages))}
    if answer.notes:
        out["notes"] = list(answer.notes)
    return out


def adapter_voltage(session: Session, deadline: Deadline) -> float:
    """The voltage at the OBD connector (ATRV), volts; works with the car off."""
    reply = session.at("ATRV", deadline.left("ATRV"))[-1]
    found = _VOLTS.search(reply)  # at the end of the line: junk may come before it
    if found is None:
        raise ObdBadResponse(f"ATRV: the adapter answered {reply!r}, not a voltage")
    return float(found.group(1))


def ignition(session: Session, deadline: Deadline) -> bool | None:
    """The ignition as the adapter senses it (ATIGN); None if the adapter cannot tell."""
    try:
        reply = session.at("ATIGN", deadline.left("ATIGN"))[-1].upper()
    except ObdUnsupported:
        return None
    return True if reply.endswith("ON") else False if reply.endswith("OFF") else None


def list_commands(session: Session) -> list[dict[str, Any]]:
    """Commands the car lists as supported: python-OBD's name, mode, PID and description;
    PIDs python-OBD cannot decode have no name."""
    known = {(c.mode, c.pid) for c in supported_commands(session.supported)}
    rows = [{"name": c.name, "mode": f"{c.mode:02X}", "pid": f"{c.pid:02X}",
             "description": c.desc} for c in supported_commands(session.supported)]
    rows += [{"name": None, "mode": f"{mode:02X}", "pid": f"{pid:02X}", "description": ""}
             for mode, pids in sorted(session.supported.items()) for pid in sorted(pids)
             if (mode, pid) not in known]
    return rows


def set_protocol(session: Session, deadline: Deadline, protocol: str) -> dict[str, Any]:
    """Switch to ``protocol`` (``auto`` or 1-9/A, no fallback); on failure, back to auto."""
    wanted = normalise_protocol(protocol)
    try:
        session.reach_car(deadline.left("protocol"), protocol=wanted)
    except ObdError as err:
        try:
            session.reach_car(deadline.left("protocol"), protocol=AUTO)
        except ObdError:
            pass
        back = session.protocol_id or "none (the car does not answer)"
        raise restated(err, f"protocol {wanted}: {err}; now on protocol {back}") from err
    return {"protocol": session.protocol_id, "name": session.protocol_name, "requested": wanted}


def monitor(session: Session, deadline: Deadline, *, seconds: float, limit: int,
            cancelled: Callable[[], bool]) -> dict[str, Any]:
    """Raw CAN frames heard for ``seconds`` or until ``limit`` frames (ATMA)."""
    if seconds <= 0 or limit <= 0:
        raise ObdConfigError("monitor: duration and count must be greater than 0")
    started = time.time()
    frames, stopped_by, status = monitor_frames(session.link, seconds=seconds, limit=limit,
                                                deadline=deadline, cancelled=cancelled)
    session.needs_sync = True  # the stop character may have left a partial reply behind
    return {"frames": frames, "count": len(frames), "started": started,
            "seconds": round(time.time() - started, 3), "stopped_by": stopped_by,
            **({"status": status} if status else {})}
