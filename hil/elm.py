"""An ELM327 (and STN11xx) command interpreter: one input line in, the adapter's output out.

The interpreter owns the adapter's settings (echo, headers, protocol, timing ...) and
talks to the vehicle only through a `Link`, so it runs the same against a simulated bus,
a real one, or a scripted stand-in. It does no I/O of its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from hil.elm_format import format_frames
from hil.link import PROTOCOL_NAMES, Link, LinkRequest, LinkResult

DEFAULT_TIMEOUT_CODE = 0x32  # AT ST units of 4.096 ms; 0x32 ≈ 200 ms
SEARCH_ORDER = ("1", "2", "3", "4", "5", "6", "7", "8", "9")
_HEX = re.compile(r"[0-9A-F]+")


class PowerReader(Protocol):
    """What the adapter can measure on the OBD connector."""

    @property
    def battery_voltage(self) -> float: ...

    @property
    def ignition(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class AdapterIdentity:
    """What the chip says about itself."""

    version: str = "ELM327 v1.5"
    description: str = "OBDII to RS232 Interpreter"
    stn_version: str | None = None  # e.g. "STN1110 v4.3.0": answers ST commands when set
    stn_device: str = "OBDLink SX r4.2"


@dataclass(slots=True)
class ElmSettings:
    """Per-adapter settings as after a reset (ATZ); `stored_protocol` survives resets."""

    echo: bool = True
    linefeeds: bool = False
    spaces: bool = True
    headers: bool = False
    dlc: bool = False
    caf: bool = True
    responses: bool = True
    protocol: str = "0"  # "0" = automatic
    auto: bool = True  # fall back to a search when the protocol does not answer
    detected: str | None = None
    timeout_code: int = DEFAULT_TIMEOUT_CODE
    adaptive: int = 1
    header: int = 0x7DF
    receive_filter: int | None = None
    last_command: str = ""
    asleep: bool = False
    stored_protocol: tuple[str, bool] = ("0", True)

    @property
    def timeout(self) -> float:
        return self.timeout_code * 0.004096


@dataclass(frozen=True, slots=True)
class ElmReply:
    """The adapter's output for one line: the echo, then (after a reset pause if `reset`) the body."""

    echo: bytes
    body: bytes
    reset: bool = False


@dataclass(slots=True)
class _Outcome:
    lines: list[str] = field(default_factory=list)
    reset: bool = False
    prompt: bool = True


AtHandler = Callable[["Elm327", re.Match[str]], _Outcome]


class Elm327:
    """The interpreter of one adapter. Not thread-safe: one serial port owns it."""

    def __init__(self, link: Link, power: PowerReader, identity: AdapterIdentity | None = None) -> None:
        self.link = link
        self.power = power
        self.identity = identity or AdapterIdentity()
        self.settings = ElmSettings()

    # ------------------------------------------------------------ entry point

    def handle(self, raw: bytes) -> ElmReply:
        """Process one line as received (without its CR) and return what the adapter prints."""
        s = self.settings
        eol = "\r\n" if s.linefeeds else "\r"
        echo = raw + eol.encode() if s.echo else b""
        if s.asleep:
            s.asleep = False
            return ElmReply(b"", self._render(["", self.identity.version], eol).encode("ascii"), reset=True)
        text = raw.decode("ascii", "replace").upper()
        command = "".join(ch for ch in text if ch > " ")
        if not command:
            command = s.last_command
        if not command:
            return ElmReply(echo, b">")
        s.last_command = command
        outcome = self._dispatch(command)
        eol = "\r\n" if s.linefeeds else "\r"
        body = (
            self._render(outcome.lines, eol)
            if outcome.prompt
            else "".join(f"{x}{eol}" for x in outcome.lines)
        )
        return ElmReply(echo, body.encode("ascii"), outcome.reset)

    @staticmethod
    def _render(lines: list[str], eol: str) -> str:
        return "".join(f"{line}{eol}" for line in lines) + eol + ">"

    def _dispatch(self, command: str) -> _Outcome:
        if command.startswith("AT"):
            return self._at(command[2:])
        if command.startswith("ST") and self.identity.stn_version is not None:
            return self._st(command[2:])
        return _Outcome(self._obd(command))

    # ------------------------------------------------------------ AT commands

    def _at(self, args: str) -> _Outcome:
        for pattern, handler in _AT_COMMANDS:
            match = pattern.fullmatch(args)
            if match:
                return handler(self, match)
        return _Outcome(["?"])

    def _st(self, args: str) -> _Outcome:
        if args == "I":
            return _Outcome([self.identity.stn_version or "?"])
        if args == "DI":
            return _Outcome([self.identity.stn_device])
        return _Outcome(["?"])

    def reset(self) -> None:
        """Power-on state: defaults, with the stored protocol."""
        stored = self.settings.stored_protocol
        self.settings = ElmSettings(stored_protocol=stored)
        self.set_protocol(stored[0], stored[1], store=False)

    def set_protocol(self, number: str, auto: bool, *, store: bool) -> None:
        s = self.settings
        s.protocol = number
        s.auto = auto or number == "0"
        s.detected = None if s.auto else number
        if store:
            s.stored_protocol = (number, auto)

    def describe_protocol(self, numeric: bool) -> str:
        s = self.settings
        current = s.detected or s.protocol
        if numeric:
            return f"A{current}" if s.auto else current
        if not s.auto:
            return PROTOCOL_NAMES.get(current, "?")
        return f"AUTO, {PROTOCOL_NAMES[s.detected]}" if s.detected else "AUTO"

    # ------------------------------------------------------------ OBD requests

    def _obd(self, command: str) -> list[str]:
        s = self.settings
        if not _HEX.fullmatch(command):
            return ["?"]
        count: int | None = None
        if len(command) % 2:
            count, command = int(command[-1], 16), command[:-1]
            if count == 0:
                return ["?"]
        payload = bytes.fromhex(command)
        if not payload or len(payload) > (7 if s.caf else 8):
            return ["?"]
        data = (bytes([len(payload)]) + payload).ljust(8, b"\x00") if s.caf else payload
        if s.auto and s.detected is None:
            return self._search(data, count)
        return self._show(self._exchange(s.detected or s.protocol, data, count))

    def _exchange(self, protocol: str, data: bytes, count: int | None) -> LinkResult:
        s = self.settings
        return self.link.exchange(
            LinkRequest(
                protocol=protocol,
                header=s.header,
                data=data,
                timeout=s.timeout,
                adaptive=s.adaptive,
                max_responses=count,
                receive_filter=s.receive_filter,
                wait_for_responses=s.responses,
            )
        )

    def _search(self, data: bytes, count: int | None) -> list[str]:
        s = self.settings
        lines: list[str] = []
        if s.protocol != "0":
            first = self._exchange(s.protocol, data, count)
            if first.frames:
                s.detected = s.protocol
                return self._show(first)
        lines.append("SEARCHING...")
        for protocol in SEARCH_ORDER:
            result = self._exchange(protocol, data, count)
            if result.frames:
                s.detected = protocol
                return lines + self._show(result)
        return [*lines, "UNABLE TO CONNECT"]

    def _show(self, result: LinkResult) -> list[str]:
        s = self.settings
        if result.error:
            return [result.error]
        if not s.responses:
            return []
        if not result.frames:
            return ["NO DATA"]
        return format_frames(result.frames, headers=s.headers, spaces=s.spaces, caf=s.caf, dlc=s.dlc)


# ---------------------------------------------------------------- AT command table


def _ok(elm: Elm327, m: re.Match[str]) -> _Outcome:
    return _Outcome(["OK"])


def _flag(name: str) -> AtHandler:
    def handler(elm: Elm327, m: re.Match[str]) -> _Outcome:
        setattr(elm.settings, name, m.group(1) == "1")
        return _Outcome(["OK"])

    return handler


def _reset(elm: Elm327, m: re.Match[str]) -> _Outcome:
    elm.reset()
    return _Outcome(["", elm.identity.version], reset=True)


def _warm_start(elm: Elm327, m: re.Match[str]) -> _Outcome:
    elm.reset()
    return _Outcome(["", elm.identity.version])


def _defaults(elm: Elm327, m: re.Match[str]) -> _Outcome:
    elm.reset()
    return _Outcome(["OK"])


def _set_protocol(elm: Elm327, m: re.Match[str]) -> _Outcome:
    elm.set_protocol(m.group(2), bool(m.group(1)), store=True)
    return _Outcome(["OK"])


def _try_protocol(elm: Elm327, m: re.Match[str]) -> _Outcome:
    elm.set_protocol(m.group(2), True, store=False)
    return _Outcome(["OK"])


def _protocol_close(elm: Elm327, m: re.Match[str]) -> _Outcome:
    if elm.settings.auto:
        elm.settings.detected = None
    return _Outcome(["OK"])


def _timeout(elm: Elm327, m: re.Match[str]) -> _Outcome:
    elm.settings.timeout_code = int(m.group(1), 16) or DEFAULT_TIMEOUT_CODE
    return _Outcome(["OK"])


def _adaptive(elm: Elm327, m: re.Match[str]) -> _Outcome:
    elm.settings.adaptive = int(m.group(1))
    return _Outcome(["OK"])


def _set_header(elm: Elm327, m: re.Match[str]) -> _Outcome:
    elm.settings.header = int(m.group(1)[-3:], 16) & 0x7FF
    return _Outcome(["OK"])


def _receive_address(elm: Elm327, m: re.Match[str]) -> _Outcome:
    elm.settings.receive_filter = int(m.group(1), 16) if m.group(1) else None
    return _Outcome(["OK"])


def _voltage(elm: Elm327, m: re.Match[str]) -> _Outcome:
    return _Outcome([f"{elm.power.battery_voltage:.1f}V"])


def _ignition(elm: Elm327, m: re.Match[str]) -> _Outcome:
    return _Outcome(["ON" if elm.power.ignition else "OFF"])


def _low_power(elm: Elm327, m: re.Match[str]) -> _Outcome:
    elm.settings.asleep = True
    return _Outcome(["OK"], prompt=False)


def _text(pick: Callable[[Elm327], str]) -> AtHandler:
    def handler(elm: Elm327, m: re.Match[str]) -> _Outcome:
        return _Outcome([pick(elm)])

    return handler


_AT_COMMANDS: tuple[tuple[re.Pattern[str], AtHandler], ...] = tuple(
    (re.compile(pattern), handler)
    for pattern, handler in (
        ("Z", _reset),
        ("WS", _warm_start),
        ("D", _defaults),
        ("I", _text(lambda e: e.identity.version)),
        ("@1", _text(lambda e: e.identity.description)),
        ("E([01])", _flag("echo")),
        ("L([01])", _flag("linefeeds")),
        ("S([01])", _flag("spaces")),
        ("H([01])", _flag("headers")),
        ("D([01])", _flag("dlc")),
        ("R([01])", _flag("responses")),
        ("CAF([01])", _flag("caf")),
        ("SP(A?)([0-9A-C])", _set_protocol),
        ("TP(A?)([0-9A-C])", _try_protocol),
        ("DP", _text(lambda e: e.describe_protocol(numeric=False))),
        ("DPN", _text(lambda e: e.describe_protocol(numeric=True))),
        ("PC", _protocol_close),
        ("ST([0-9A-F]{2})", _timeout),
        ("AT([012])", _adaptive),
        ("SH([0-9A-F]{3}|[0-9A-F]{6}|[0-9A-F]{8})", _set_header),
        ("CRA([0-9A-F]{3})?", _receive_address),
        ("AR", _receive_address),
        ("RV", _voltage),
        ("IGN", _ignition),
        ("LP", _low_power),
        # accepted and ignored: memory, flow control, K-line and formatting details we do not model
        ("M[01]|CFC[01]|V[01]|AL|NL|KW[01]?|BI|FI|SW[0-9A-F]{2}|IB(10|48|96)|IIA[0-9A-F]{2}", _ok),
        ("FCSH[0-9A-F]{3}|FCSD[0-9A-F]{2,10}|FCSM[0-2]|JE|JS|CEA([0-9A-F]{2})?", _ok),
    )
)
