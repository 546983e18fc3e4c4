"""Raw CAN monitoring (ATMA) through the owner's serial link, bounded in time and frames.

python-OBD cannot monitor: its reader waits for a prompt, which ATMA only prints when it
stops. Here the lines are read as they come, and any byte written stops the adapter.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog

from autopi_agent.obd.errors import ObdUnsupported
from autopi_agent.obd.link import PROMPT, ElmLink
from autopi_agent.obd.replies import split_lines
from autopi_agent.obd.session import Deadline

__all__ = ["MAX_FRAMES", "MAX_SECONDS", "monitor_frames", "parse_monitor_line"]

log = structlog.get_logger(__name__)

MAX_SECONDS = 60.0
MAX_FRAMES = 10_000
_STOP_WAIT = 2.0  # seconds the adapter gets to print its prompt after the stop byte
_STATUS = ("BUFFER FULL", "CAN ERROR", "BUS ERROR", "STOPPED", "NO DATA", "DATA ERROR")


def parse_monitor_line(line: str) -> dict[str, str] | None:
    """``7E8 04 41 0C 0C 30`` -> ``{"id": "7E8", "data": "04410C0C30"}``; a 29-bit id is
    its first four byte pairs (``18 DA F1 10 ...``); None for anything that is not a frame."""
    tokens = line.split()
    if len(tokens) < 2 or any(not _is_hex(token) for token in tokens):
        return None
    if len(tokens[0]) == 3:
        return {"id": tokens[0], "data": "".join(tokens[1:])}
    if len(tokens) >= 5 and all(len(token) == 2 for token in tokens):
        return {"id": "".join(tokens[:4]), "data": "".join(tokens[4:])}
    return None


def _is_hex(token: str) -> bool:
    return all(char in "0123456789ABCDEF" for char in token)


def monitor_frames(link: ElmLink, *, seconds: float, limit: int, deadline: Deadline,
                   cancelled: Callable[[], bool]) -> tuple[list[dict[str, Any]], str, list[str]]:
    """Frames heard (each with ``t``, seconds since the start), why it stopped, status lines."""
    start = time.monotonic()
    end = min(start + min(seconds, MAX_SECONDS), deadline.at - _STOP_WAIT)
    limit = min(limit, MAX_FRAMES)
    link.discard_input()
    link.write(b"ATMA\r")
    frames: list[dict[str, Any]] = []
    status: list[str] = []
    pending = bytearray()
    stopped_by = "duration"
    while True:
        if len(frames) >= limit:
            stopped_by = "count"
            break
        if cancelled():
            stopped_by = "cancelled"
            break
        if time.monotonic() >= end:
            break
        pending += link.read_some(min(end, time.monotonic() + 0.1))
        if PROMPT in pending:
            stopped_by = "adapter"
            break
        complete, _, rest = bytes(pending).rpartition(b"\r")
        pending = bytearray(rest)
        _collect(complete, start, frames, status, limit)
    if stopped_by != "adapter":
        link.write(b"\r")  # any byte stops ATMA; the adapter then prints its prompt
        pending += link.read_reply(time.monotonic() + _STOP_WAIT, "stopping ATMA")
    _collect(bytes(pending).replace(PROMPT, b""), start, frames, status, limit)
    if not frames and "?" in status:
        raise ObdUnsupported("monitor: the OBD adapter does not support ATMA (monitor all): "
                             "it answered ?")
    log.info("obd.monitored", frames=len(frames), stopped_by=stopped_by)
    return frames, stopped_by, status


def _collect(data: bytes, start: float, frames: list[dict[str, Any]], status: list[str],
             limit: int) -> None:
    at = round(time.monotonic() - start, 3)
    for line in split_lines(data):
        frame = parse_monitor_line(line)
        if frame is not None:
            if len(frames) < limit:
                frames.append({**frame, "t": at})
        elif line == "?" or any(text in line for text in _STATUS):
            status.append(line)
