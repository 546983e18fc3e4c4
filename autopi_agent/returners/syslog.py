"""Returner ``syslog``: one syslog message per job return, to the local daemon or a remote one.

The message is ``<PRI>TAG: JSON`` (RFC 3164 without a timestamp, which the local daemon
adds), JSON being the return as the jsonl returner writes it, cut at ``max_bytes``. Our own
datagram socket is used rather than the ``syslog`` module, whose ``openlog`` settings are
global to the process (and several agents may share one). Settings
(``returners: {syslog: {...}}``):

=========== ============= ==========================================================
address     ``/dev/log``  a Unix datagram socket path, or ``host:port`` for UDP
facility    ``user``      kern, user, mail, daemon, auth, syslog, local0 ... local7
level       ``info``      emerg, alert, crit, err, warning, notice, info, debug
tag         autopi-agent  the program name shown in the log
max_bytes   2048          longer messages are cut (RFC 5426 asks receivers for 2048)
=========== ============= ==========================================================

Without the local socket (no syslog daemon, a container) the returner does nothing and
says so once, at start.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from autopi_agent.minion.context import AgentContext
from autopi_agent.returners import ReturnerConfigError, check_settings
from autopi_agent.returners.jsonl import encode
from autopi_proto.messages import JobReturn

__all__ = ["FACILITIES", "LEVELS", "NullReturner", "SyslogReturner", "create", "parse_address"]

log = structlog.get_logger(__name__)

FACILITIES: Mapping[str, int] = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5,
    **{f"local{n}": 16 + n for n in range(8)},
}
LEVELS: Mapping[str, int] = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4,
                             "notice": 5, "info": 6, "debug": 7}
_SETTINGS = ("address", "facility", "level", "tag", "max_bytes")
Address = str | tuple[str, int]


def parse_address(text: str) -> Address:
    """``/path`` for a Unix socket, else ``host:port`` (``[v6]:port``) for UDP."""
    if text.startswith("/"):
        return text
    host, colon, port = text.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ReturnerConfigError(f"returners.syslog.address: expected /path/to/socket or "
                                  f"host:port, got {text!r}")
    return host, int(port)


class SyslogReturner:
    """Sends each return as one datagram."""

    def __init__(self, address: Address = "/dev/log", *, facility: str = "user",
                 level: str = "info", tag: str = "autopi-agent", max_bytes: int = 2048) -> None:
        if facility not in FACILITIES or level not in LEVELS:
            raise ReturnerConfigError(
                f"returners.syslog: facility must be one of {', '.join(FACILITIES)} and level "
                f"one of {', '.join(LEVELS)}; got {facility!r}, {level!r}")
        if not tag or any(char in tag for char in " :[]\n"):
            raise ReturnerConfigError(f"returners.syslog.tag: expected a word, got {tag!r}")
        self.address = address
        self.priority = FACILITIES[facility] * 8 + LEVELS[level]
        self.tag = tag
        self.max_bytes = max_bytes
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def message(self, ret: JobReturn) -> bytes:
        """The datagram for ``ret``."""
        head = f"<{self.priority}>{self.tag}: ".encode()
        return (head + encode(ret, time.time()).rstrip(b"\n"))[: self.max_bytes]

    async def send(self, ret: JobReturn) -> None:
        await asyncio.to_thread(self._send, self.message(ret))

    async def aclose(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _send(self, datagram: bytes) -> None:
        with self._lock:
            if self._sock is None:
                self._sock = self._connect()
            try:
                self._sock.send(datagram)
            except OSError:
                # The daemon restarted (new socket) or the route changed: reconnect once.
                self._sock.close()
                self._sock = self._connect()
                self._sock.send(datagram)

    def _connect(self) -> socket.socket:
        if isinstance(self.address, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            target: Any = self.address
        else:
            family, kind, proto, _, target = socket.getaddrinfo(
                *self.address, type=socket.SOCK_DGRAM)[0]
            sock = socket.socket(family, kind, proto)
        try:
            sock.connect(target)
        except OSError:
            sock.close()
            raise
        return sock


class NullReturner:
    """Takes returns and drops them (syslog is not available here)."""

    async def send(self, ret: JobReturn) -> None:
        return None

    async def aclose(self) -> None:
        return None


def create(ctx: AgentContext, settings: Mapping[str, Any]) -> SyslogReturner | NullReturner:
    """The syslog returner; a no-op (with a warning) when the local socket is missing."""
    check_settings("syslog", settings, _SETTINGS)
    max_bytes = settings.get("max_bytes", 2048)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 64:
        raise ReturnerConfigError(f"returners.syslog.max_bytes: expected a whole number of 64 "
                                  f"or more, got {max_bytes!r}")
    returner = SyslogReturner(parse_address(str(settings.get("address", "/dev/log"))),
                              facility=str(settings.get("facility", "user")),
                              level=str(settings.get("level", "info")),
                              tag=str(settings.get("tag", "autopi-agent")), max_bytes=max_bytes)
    if isinstance(returner.address, str) and not Path(returner.address).exists():
        log.warning("returner.syslog_unavailable", address=returner.address,
                    hint="no syslog socket here; returns named for syslog are dropped")
        return NullReturner()
    return returner
