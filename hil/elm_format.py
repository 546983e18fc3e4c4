"""How an ELM327 prints CAN frames: headers, spaces, DLC and CAN auto-formatting (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from hil.link import CanFrame

SINGLE, FIRST, CONSECUTIVE = 0x0, 0x1, 0x2


def hex_bytes(data: bytes, spaces: bool) -> str:
    return (" " if spaces else "").join(f"{b:02X}" for b in data)


def _frame_type(data: bytes) -> int | None:
    return data[0] >> 4 if data else None


def _single_frame_bytes(data: bytes) -> bytes:
    """PCI plus the bytes it announces: auto-formatting hides the padding after them."""
    length = data[0] & 0x0F
    return data[: 1 + length] if 0 < length else data


def _with_header(frame: CanFrame, caf: bool, dlc: bool, spaces: bool) -> str:
    data = frame.data
    if caf and _frame_type(data) == SINGLE:
        data = _single_frame_bytes(data)
    sep = " " if spaces else ""
    head = f"{frame.arbitration_id:03X}" if frame.arbitration_id <= 0x7FF else f"{frame.arbitration_id:08X}"
    parts = [head, *([str(len(frame.data))] if dlc else []), hex_bytes(data, spaces)]
    return sep.join(p for p in parts if p)


def _without_header(frame: CanFrame, spaces: bool) -> list[str]:
    data = frame.data
    sep = " " if spaces else ""
    kind = _frame_type(data)
    if kind == SINGLE and 0 < (data[0] & 0x0F):
        return [hex_bytes(data[1 : 1 + (data[0] & 0x0F)], spaces)]
    if kind == FIRST and len(data) >= 2:
        length = ((data[0] & 0x0F) << 8) | data[1]
        return [f"{length:03X}", f"0:{sep}{hex_bytes(data[2:], spaces)}"]
    if kind == CONSECUTIVE:
        return [f"{data[0] & 0x0F:X}:{sep}{hex_bytes(data[1:], spaces)}"]
    return [hex_bytes(data, spaces)]


def format_frames(
    frames: Sequence[CanFrame], *, headers: bool, spaces: bool, caf: bool, dlc: bool = False
) -> list[str]:
    """The lines an ELM327 prints for these frames, in arrival order.

    With headers on, each frame is one line: id, (DLC,) data with its PCI byte. With
    headers off and auto-formatting on, single frames lose their PCI and multi-frame
    answers are printed as the total length then numbered `N:` lines.
    """
    lines: list[str] = []
    for frame in frames:
        if headers:
            lines.append(_with_header(frame, caf, dlc, spaces))
        elif caf:
            lines.extend(_without_header(frame, spaces))
        else:
            lines.append(hex_bytes(frame.data, spaces))
    return lines
