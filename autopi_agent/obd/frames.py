"""Checks python-OBD leaves out, on the frames and messages of one reply; VIN decoding (pure).

python-OBD 0.7.3 pads a short message with zeros before decoding it (a truncated ``41 0C``
reads as 0 rpm) and decodes ``7F 01 22`` as if it were data. Here every message is checked
against what its frames announced and what the command needs before anything is decoded.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from obd import OBDCommand
from obd.protocols.protocol import Frame, Message, Protocol
from obd.protocols.protocol_can import CANProtocol

from autopi_agent.obd.errors import NRC_NAMES, ObdBadResponse, ObdNegativeResponse
from autopi_agent.obd.replies import parse_reply, raise_for_status

__all__ = [
    "Answer",
    "check_announced_lengths",
    "check_answer",
    "ecu_address",
    "expected_replies",
    "split_negative",
    "vin_from_payload",
]

NEGATIVE = 0x7F
POSITIVE_OFFSET = 0x40
_VIN = re.compile(r"[A-HJ-NPR-Z0-9]{17}")


@dataclass(frozen=True, slots=True)
class Answer:
    """The checked answer to one request: the messages that answer it, the frames as
    received, notes (refusals from other ECUs, skipped junk), when it was received."""

    messages: list[Message]
    frames: tuple[str, ...]
    notes: tuple[str, ...] = ()
    received: float = field(default_factory=time.time)
    # Frames in the reply when each ECU's answer fitted one frame (0 otherwise): the count
    # digit that lets the adapter stop listening as soon as they are in ("010C1").
    frame_count: int = 0


def check_answer(lines: list[str], command: OBDCommand, protocol: Protocol, *, sent: str,
                 what: str) -> Answer:
    """The adapter's reply ``lines`` to ``sent`` as a checked answer to ``command``.

    Raises the typed error for a status reply (NO DATA, CAN ERROR ...), a truncated or
    mismatched answer, or a refusal (7F) from every ECU that answered.
    """
    reply = parse_reply(lines, echo=sent)
    raise_for_status(reply, what)
    check_announced_lengths(reply.frames, protocol, what)
    every = protocol(list(reply.frames))
    messages = [m for m in every if m.ecu & command.ecu]
    positive, negative = split_negative(messages)
    if not positive and negative:
        raise negative_error(negative[0], what)
    answers = expected_replies(positive, command, what)
    if not answers:
        raise ObdBadResponse(f"{what}: the answer does not match the request: "
                             f"{' | '.join(reply.frames) or 'no frames'}")
    notes = [str(negative_error(m, f"ECU {ecu_address(m, protocol)}")) for m in negative]
    if reply.garbled:
        notes.append(f"skipped unreadable bytes: {' | '.join(reply.junk)[:60]!r}")
    count = len(reply.frames) if all(len(m.frames) == 1 for m in every) else 0
    return Answer(answers, reply.frames, tuple(notes), frame_count=count)


def check_announced_lengths(frames: Sequence[str], protocol: Protocol, what: str) -> None:
    """Raise ObdBadResponse when a CAN answer carries fewer bytes than its PCI announced.

    ``frames`` are hex lines with headers. Only ISO 15765-4 frames announce a length; the
    other protocols are checked against the command's length by ``expected_replies``.
    """
    if not isinstance(protocol, CANProtocol):
        return
    by_sender: dict[int | None, list[Frame]] = {}
    for line in frames:
        frame = Frame(line)
        if protocol.parse_frame(frame):
            by_sender.setdefault(frame.tx_id, []).append(frame)
    for sender in by_sender.values():
        announced, carried = _lengths(sender, protocol)
        if carried < announced:
            raise ObdBadResponse(
                f"{what}: truncated answer: the frame announced {announced} bytes but carried "
                f"{carried} ({' '.join(f.raw for f in sender)}); the value was not decoded")


def _lengths(frames: list[Frame], protocol: CANProtocol) -> tuple[int, int]:
    first = frames[0]
    if first.type == protocol.FRAME_TYPE_SF:
        return first.data_len or 0, len(first.data) - 1
    if first.type == protocol.FRAME_TYPE_FF:
        consecutive = [f for f in frames[1:] if f.type == protocol.FRAME_TYPE_CF]
        carried = len(first.data) - 2 + sum(len(f.data) - 1 for f in consecutive)
        return first.data_len or 0, carried
    return 0, 0


def split_negative(messages: Sequence[Message]) -> tuple[list[Message], list[Message]]:
    """(positive, negative) messages: a negative one starts with 7F."""
    positive = [m for m in messages if m.data and m.data[0] != NEGATIVE]
    negative = [m for m in messages if m.data and m.data[0] == NEGATIVE]
    return positive, negative


def negative_error(message: Message, what: str) -> ObdNegativeResponse:
    """The error an ECU's ``7F <sid> <nrc>`` stands for."""
    data = bytes(message.data)
    service = data[1] if len(data) > 1 else 0
    nrc = data[2] if len(data) > 2 else 0
    name = NRC_NAMES.get(nrc, "manufacturer specific")
    hint = {0x22: ": most ECUs refuse this with the engine running, or need the ignition on",
            0x11: ": the ECU does not offer this service",
            0x12: ": the ECU does not support this PID",
            0x31: ": the ECU does not support this PID",
            0x21: ": the ECU is busy, try again"}.get(nrc, "")
    return ObdNegativeResponse(
        f"{what}: the ECU refused with negative response 7F {service:02X} {nrc:02X} "
        f"({name}){hint}", service=service, nrc=nrc)


def expected_replies(messages: Sequence[Message], command: OBDCommand,
                     what: str) -> list[Message]:
    """Messages that answer ``command`` (service + 0x40 and the same PID); raises
    ObdBadResponse when one is shorter than the command's fixed length."""
    request = bytes(command.command)
    try:
        sent = bytes.fromhex(request.decode("ascii"))
    except ValueError:
        return list(messages)  # an AT command: nothing to match
    answers = [m for m in messages if _answers(bytes(m.data), sent)]
    # python-OBD's lengths are exact for services 01/02; its service 09 lengths are the
    # padded legacy layouts, longer than a CAN answer, so those are checked by the PCI only.
    exact = command.bytes if sent[0] in (0x01, 0x02) else 0
    for message in answers:
        if exact and len(message.data) < exact:
            raise ObdBadResponse(
                f"{what}: truncated answer: {len(message.data)} bytes "
                f"({bytes(message.data).hex(' ').upper()}) where the command needs "
                f"{exact}; the value was not decoded")
    return answers


def _answers(data: bytes, sent: bytes) -> bool:
    if not data or data[0] != sent[0] + POSITIVE_OFFSET:
        return False
    # Services 01, 02 and 09 echo the PID; 03, 04, 07 and 0A have none.
    return len(sent) < 2 or sent[0] not in (0x01, 0x02, 0x09) or data[1:2] == sent[1:2]


def ecu_address(message: Message, protocol: Protocol) -> str:
    """The sender as printed: ``7E8`` (CAN 11-bit), ``18DAF110`` (29-bit), or the legacy
    source byte."""
    if not message.frames:
        return ""
    raw = str(message.frames[0].raw)
    if isinstance(protocol, CANProtocol):
        return raw[:3] if protocol.id_bits == 11 else raw[:8]
    return raw[4:6]


def vin_from_payload(data: bytes) -> str:
    """The VIN in a service 09 PID 02 answer (``49 02 01`` + 17 ASCII bytes on CAN; legacy
    protocols pad the front with NUL bytes). Only NUL padding is removed, never characters.

    Raises ObdBadResponse when the answer is not 17 VIN characters.
    """
    if data[:2] != b"\x49\x02":
        raise ObdBadResponse(f"VIN: not a 09 02 answer: {data.hex(' ').upper()}")
    body = data[2:]
    if len(body) > 17 and body[0] == 0x01:
        body = body[1:]  # CAN: the number of data items (1) comes first
    text = body.strip(b"\x00").decode("ascii", "replace")
    if not _VIN.fullmatch(text):
        raise ObdBadResponse(
            f"VIN: the answer is not a 17-character VIN: {text!r} "
            f"(raw {data.hex(' ').upper()})")
    return text
