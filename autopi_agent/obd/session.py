"""A connected adapter: python-OBD's handshake, then bounded requests on the port it opened.

python-OBD 0.7.3 (pinned) does the adapter handshake (ATZ, ATE0, ATH1, ATL0, protocol) and
owns the command table, the frame parsers and the decoders. Its request path is not used
after the handshake: it has no deadline (10 s port timeout, retried reads) and no checks
for negative or truncated answers. The session takes over python-OBD's serial port, found
at the private ``ELM327._ELM327__port`` (checked: the version is pinned and a changed
layout fails loudly), and sends each request itself with a deadline (see link.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import obd
import serial
import structlog
from obd import OBDCommand, OBDStatus
from obd.elm327 import ELM327
from obd.protocols.protocol import Message, Protocol

from autopi_agent.obd.errors import (
    ObdBadResponse,
    ObdBusError,
    ObdError,
    ObdNoData,
    ObdTimeout,
    ObdUnableToConnect,
    ObdUnsupported,
)
from autopi_agent.obd.frames import Answer, check_answer, ecu_address
from autopi_agent.obd.link import ElmLink, open_port
from autopi_agent.obd.replies import parse_reply, raise_for_status
from autopi_agent.obd.settings import AUTO, BAUDRATES, ObdSettings

__all__ = ["Answer", "Deadline", "Session", "probe"]

log = structlog.get_logger(__name__)

# The functional (broadcast) request header of each protocol, restored after a header=...
DEFAULT_HEADERS = {"1": "616AF1", "2": "686AF1", "3": "686AF1", "4": "C133F1", "5": "C133F1",
                   "6": "7DF", "7": "18DB33F1", "8": "7DF", "9": "18DB33F1", "A": "18DB33F1"}
_BITMAP_MODES = (0x01, 0x09)


@dataclass(frozen=True, slots=True)
class Deadline:
    """When a request must be done (monotonic ``at``); ``cap`` bounds any one exchange."""

    at: float
    cap: float

    @classmethod
    def after(cls, seconds: float, cap: float) -> Deadline:
        return cls(time.monotonic() + seconds, cap)

    def left(self, what: str) -> float:
        """Seconds the next exchange may take; ObdTimeout when the time is up."""
        remaining = min(self.cap, self.at - time.monotonic())
        if remaining <= 0:
            raise ObdTimeout(f"{what}: out of time")
        return remaining


def probe(settings: ObdSettings, timeout: float) -> int:
    """Open the port ourselves, find the baud rate, bring the line to a prompt, close it.

    Returns the baud rate to give python-OBD (0 for a URL). Bounded by ``timeout``: a
    silent adapter gives ObdTimeout here instead of python-OBD's minutes-long handshake.
    """
    port = open_port(settings.port, settings.baudrate)
    link = ElmLink(port, settings.port)
    try:
        baud = settings.baudrate
        if not settings.is_url and baud == 0:
            baud = link.detect_baudrate()
        link.sync(timeout)
        return 0 if settings.is_url else baud
    except ObdTimeout as err:
        raise ObdTimeout(f"the OBD adapter at {settings.port} did not answer within "
                         f"{timeout:g} s: is it powered, and is obd.baudrate right?") from err
    finally:
        link.close()


def _python_obd_port(connection: obd.OBD) -> serial.SerialBase:
    interface = connection.interface
    port = getattr(interface, "_ELM327__port", None)
    if not isinstance(interface, ELM327) or not isinstance(port, serial.SerialBase):
        raise ObdError("python-OBD's ELM327 no longer keeps its port in _ELM327__port; "
                       "this agent needs python-OBD 0.7.3 (pip install obd==0.7.3)")
    return port


class Session:
    """One connection to the adapter and, once reached, the car. Owner thread only."""

    def __init__(self, settings: ObdSettings, connection: obd.OBD, link: ElmLink,
                 baudrate: int) -> None:
        self.settings = settings
        self.connection = connection
        self.link = link
        self.baudrate = baudrate
        self.adapter_version = ""
        self.protocol: Protocol | None = None
        self.supported: dict[int, frozenset[int]] = {}
        # How many ECUs list each (service, PID): a broadcast request waits for that many
        # answers, so a slow ECU's late answer cannot be taken for the next request's.
        self.responders: dict[tuple[int, int], int] = {}
        self.connected_at = time.time()
        self.vin: str | None = None
        self.vin_raw = ""
        self.needs_sync = False  # set after a timeout: a late reply may still be on its way
        self._header: str | None = None  # None: the protocol's default (functional) header
        self._frame_counts: dict[tuple[str | None, str], int] = {}

    @classmethod
    def open(cls, settings: ObdSettings, timeout: float) -> Session:
        """Probe the adapter, let python-OBD do its handshake, take over its port."""
        baud = probe(settings, min(timeout, settings.timeout))
        log.info("obd.connecting", port=settings.port, baudrate=baud or None,
                 protocol=settings.protocol)
        # A URL has no baud rate, but None would make python-OBD probe for one.
        connection = obd.OBD(portstr=settings.port, baudrate=baud or BAUDRATES[0],
                             protocol=None if settings.protocol == AUTO else settings.protocol,
                             fast=False, timeout=0.1, check_voltage=False)
        if connection.status() == OBDStatus.NOT_CONNECTED:
            raise ObdBadResponse(f"the OBD adapter at {settings.port} answered the probe but not "
                                 "python-OBD's initialisation (ATZ, ATE0, ATH1, ATL0): a noisy "
                                 "line or an adapter that is not an ELM327")
        try:
            link = ElmLink(_python_obd_port(connection), settings.port)
        except ObdError:
            connection.close()
            raise
        session = cls(settings, connection, link, baud)
        try:
            session.adapter_version = " ".join(session.at("ATI"))
        except ObdError:
            session.close()
            raise
        return session

    # ------------------------------------------------------------ the car

    @property
    def car_connected(self) -> bool:
        """True once the car answered 0100 on a known protocol."""
        return self.protocol is not None

    @property
    def protocol_id(self) -> str:
        return str(self.protocol.ELM_ID) if self.protocol is not None else ""

    @property
    def protocol_name(self) -> str:
        return str(self.protocol.ELM_NAME) if self.protocol is not None else ""

    def reach_car(self, timeout: float, protocol: str | None = None) -> None:
        """Find the car: 0100 on the current (or given) protocol, else an automatic search.

        Sets ``protocol`` and ``supported``; raises ObdUnableToConnect / ObdBusError /
        ObdNoData (from the adapter's reply) when no ECU answers.
        """
        self.protocol = None
        self._header = None
        self._frame_counts.clear()
        if protocol is not None:
            self.at(f"ATSP{protocol}" if protocol != AUTO else "ATSP0")
        try:
            lines = self._first_contact(timeout)
        except (ObdUnableToConnect, ObdBusError, ObdNoData):
            if protocol not in (None, AUTO) or self.settings.protocol == AUTO:
                raise
            log.info("obd.protocol_fallback", configured=self.settings.protocol)
            self.at("ATSP0")
            lines = self._first_contact(timeout)
        number = self.at("ATDPN")[-1].removeprefix("A")
        parser = ELM327._SUPPORTED_PROTOCOLS.get(number)
        if parser is None:
            raise ObdUnsupported(f"the car speaks ELM protocol {number!r}, which python-OBD "
                                 "cannot parse")
        candidate = parser(parse_reply(lines, echo="0100").frames)
        check_answer(lines, obd.commands.PIDS_A, candidate, sent="0100",
                     what="connecting to the car (0100)")
        self.protocol = candidate
        self.supported, self.responders = self._read_supported()
        log.info("obd.car_connected", protocol=number, supported=self.supported_count)

    @property
    def fell_back(self) -> bool:
        """True when the car answers on another protocol than the configured one."""
        configured = self.settings.protocol
        return self.car_connected and configured != AUTO and self.protocol_id != configured

    def _first_contact(self, timeout: float) -> list[str]:
        lines = self.link.exchange("0100", timeout)
        raise_for_status(parse_reply(lines, echo="0100"), "connecting to the car (0100)")
        return lines

    def _read_supported(self) -> tuple[dict[int, frozenset[int]], dict[tuple[int, int], int]]:
        supported: dict[int, frozenset[int]] = {}
        responders: dict[tuple[int, int], int] = {}
        for mode in _BITMAP_MODES:
            pids: set[int] = set()
            base = 0
            while base <= 0xE0:
                bitmaps = self._bitmap(mode, base)
                if bitmaps is None:
                    break
                for bits in bitmaps:
                    listed = {base + i + 1 for i in range(32) if bits >> (31 - i) & 1}
                    pids |= listed
                    for pid in listed:
                        responders[mode, pid] = responders.get((mode, pid), 0) + 1
                if base + 0x20 not in pids:
                    break
                base += 0x20
            supported[mode] = frozenset(pids)
        return supported, responders

    def _bitmap(self, mode: int, base: int) -> list[int] | None:
        command = OBDCommand(f"PIDS_{mode:02X}_{base:02X}", "", f"{mode:02X}{base:02X}".encode(),
                             6, obd.decoders.noop)
        try:
            answer = self.request(command, self.settings.timeout)
        except ObdError as err:
            log.info("obd.bitmap_unavailable", mode=f"{mode:02X}", base=f"{base:02X}",
                     error=err.kind)
            return None
        # One bitmap per ECU that answered (every ECU's list counts).
        return [int.from_bytes(bytes(message.data[2:6]), "big") for message in answer.messages]

    @property
    def supported_count(self) -> int:
        """How many service 01 PIDs the car lists (bitmap PIDs 00, 20 ... excluded)."""
        return sum(1 for pid in self.supported.get(0x01, ()) if pid % 0x20)

    def supports(self, command: OBDCommand) -> bool:
        """Whether the car lists ``command`` (commands without a PID always pass)."""
        mode, pid = command.mode, command.pid
        if mode not in self.supported or pid is None or pid % 0x20 == 0:
            return True
        return pid in self.supported[mode]

    # ------------------------------------------------------------ requests

    def at(self, command: str, timeout: float | None = None) -> list[str]:
        """An AT command's reply lines (echo and junk removed); raises on ``?``."""
        lines = self.link.exchange(command, timeout or self.settings.timeout)
        lines = [line for line in lines if line.replace(" ", "") != command.replace(" ", "")]
        if lines and lines[-1].endswith("?"):
            raise ObdUnsupported(f"the OBD adapter does not support {command} (it answered ?)")
        return lines or [""]

    def use_header(self, header: str | None) -> None:
        """Send requests to ``header`` (ATSH); None restores the protocol's default."""
        if header == self._header:
            return
        target = header or DEFAULT_HEADERS.get(self.protocol_id, "7DF")
        reply = self.at(f"ATSH{target}")
        if not reply[-1].endswith("OK"):
            raise ObdBadResponse(f"the adapter did not accept header {target}: {reply}")
        self._header = header

    def request(self, command: OBDCommand, timeout: float, *, header: str | None = None,
                what: str | None = None) -> Answer:
        """Send ``command`` and return its checked answer (typed errors for the rest)."""
        if self.protocol is None:
            raise ObdError("internal: request before the car was reached")
        what = what or f"{command.name} ({command.command.decode()})"
        self.use_header(header)
        text = command.command.decode()
        key = (header, text)
        count = self._frame_counts.get(key) if self.settings.fast else None
        if count is not None and header is None and command.pid is not None:
            # A count learned while one ECU was late would cut the next answers short.
            count = max(count, self.responders.get((command.mode, command.pid), 0))
        sent = f"{text}{count}" if count else text
        try:
            answer = check_answer(self.link.exchange(sent, timeout), command, self.protocol,
                                  sent=sent, what=what)
        except (ObdNoData, ObdBadResponse) as err:
            if count is None and isinstance(err, ObdBadResponse):
                raise
            # With adaptive timing (ATAT1) the adapter waits only ~3x the usual response
            # time, which a busy ECU can miss; and a count digit may be out of date. One
            # more try, without the count (a silent ECU costs one more wait of ~30-200 ms).
            log.info("obd.retry", command=sent, error=err.kind)
            self._frame_counts.pop(key, None)
            answer = check_answer(self.link.exchange(text, timeout), command, self.protocol,
                                  sent=text, what=what)
        if answer.frame_count and answer.frame_count < 10:
            self._frame_counts[key] = answer.frame_count
        return answer

    def ecus(self, messages: list[Message]) -> tuple[str, ...]:
        """Who sent ``messages``, as printed addresses (``7E8``)."""
        assert self.protocol is not None
        return tuple(ecu_address(m, self.protocol) for m in messages)

    def close(self) -> None:
        """Close the port (python-OBD's close would send ATZ, whose late banner trips the
        next connection); python-OBD's objects are dropped."""
        self.link.close()
        self.connection.interface = None
        self.protocol = None

