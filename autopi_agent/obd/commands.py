"""Which OBD command a user means: a python-OBD name (``RPM``) or a mode and PID (``01``/``0C``)."""

from __future__ import annotations

import re

import obd
from obd import OBDCommand
from obd.decoders import dtc, noop
from obd.protocols import ECU

from autopi_agent.obd.errors import ObdConfigError

__all__ = ["GET_PERMANENT_DTC", "by_mode_pid", "resolve", "supported_commands"]

# python-OBD 0.7.3 has no command for service 0A; the answer has the layout of service 03's.
GET_PERMANENT_DTC = OBDCommand("GET_PERMANENT_DTC", "Get permanent DTCs", b"0A", 0, dtc,
                               ECU.ALL, False)
_HEADER = re.compile(r"[0-9A-F]{3}|[0-9A-F]{6}|[0-9A-F]{8}")
_PID_MODES = (0x01, 0x02, 0x05, 0x06, 0x08, 0x09)


def _hex_number(value: object, what: str, digits: int) -> int:
    text = f"{value:0{digits}X}" if isinstance(value, int) else str(value).strip().upper()
    text = text.removeprefix("0X")
    if not text or len(text) > digits or any(c not in "0123456789ABCDEF" for c in text):
        raise ObdConfigError(f"{what} must be hex, 1 to {digits} digits (such as 0C), not {value!r}")
    return int(text, 16)


def by_mode_pid(mode: object, pid: object | None) -> tuple[int, int | None]:
    """``mode`` and ``pid`` given as hex text (``01``, ``0C``) as numbers.

    YAML on the command line reads ``pid=10`` as the number 10: a number is taken as it is
    written, so ``10`` means 0x10, as in every OBD table.
    """
    mode_number = _hex_number(str(mode) if isinstance(mode, int) else mode, "mode", 2)
    if pid is None:
        if mode_number in _PID_MODES:
            raise ObdConfigError(f"mode {mode_number:02X} needs a pid (such as pid=0C)")
        return mode_number, None
    return mode_number, _hex_number(str(pid) if isinstance(pid, int) else pid, "pid", 4)


def resolve(name: str | None = None, *, mode: object = None, pid: object = None,
            force: bool = False) -> OBDCommand:
    """The command a user names; an unlisted mode/PID gives a raw command when ``force``."""
    if name is not None:
        if mode is not None or pid is not None:
            raise ObdConfigError("give a command name or mode and pid, not both "
                                 "(for several commands: obd.query_many RPM SPEED)")
        key = str(name).strip().upper()
        if not obd.commands.has_name(key):
            raise ObdConfigError(f"unknown OBD command {name!r}: see obd.commands for the ones "
                                 "this car supports, or use mode=01 pid=0C")
        command: OBDCommand = obd.commands[key]
        return command
    if mode is None:
        raise ObdConfigError("name a command (such as RPM) or give mode and pid (mode=01 pid=0C)")
    mode_number, pid_number = by_mode_pid(mode, pid)
    if pid_number is not None and obd.commands.has_pid(mode_number, pid_number):
        known: OBDCommand = obd.commands[mode_number][pid_number]
        return known
    text = f"{mode_number:02X}" + ("" if pid_number is None else f"{pid_number:02X}")
    if pid_number is None:
        for command in (*obd.commands.base_commands(), GET_PERMANENT_DTC):
            if command.command == text.encode():
                return command
    if not force:
        raise ObdConfigError(f"python-OBD has no decoder for mode {text[:2]} pid {text[2:] or '-'}: "
                             "add force=True (and decode=False) to send it and get the raw bytes")
    return OBDCommand(f"M{text}", f"mode {text[:2]} pid {text[2:]}", text.encode(), 0, noop,
                      ECU.ALL, False)


def check_header(header: str | None) -> str | None:
    """A CAN header for ATSH: 3 (11-bit), 6 or 8 (29-bit) hex digits; None keeps the default."""
    if header is None:
        return None
    text = str(header).strip().upper().removeprefix("0X")
    if not _HEADER.fullmatch(text):
        raise ObdConfigError(f"header must be 3, 6 or 8 hex digits (such as 7E0), not {header!r}")
    return text


def supported_commands(supported: dict[int, frozenset[int]]) -> list[OBDCommand]:
    """python-OBD commands for the mode/PID pairs a car lists as supported."""
    found = []
    for mode, pids in sorted(supported.items()):
        found += [obd.commands[mode][pid] for pid in sorted(pids)
                  if obd.commands.has_pid(mode, pid)]
    return found
