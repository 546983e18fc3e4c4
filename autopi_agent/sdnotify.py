"""systemd's service notifications (sd_notify): one datagram to ``$NOTIFY_SOCKET``, no libsystemd.

Under ``Type=notify`` the daemon says ``READY=1`` when it is up, ``WATCHDOG=1`` at least every
``WatchdogSec`` (systemd passes it as ``WATCHDOG_USEC``), ``STATUS=...`` for
``systemctl status`` and ``STOPPING=1`` on its way out. Outside systemd there is no
``NOTIFY_SOCKET`` and every call is a cheap no-op returning False.

Typical use in an asyncio daemon::

    notify("READY=1\\nSTATUS=connecting to salt")
    interval = watchdog_interval()
    if interval is not None:
        task = asyncio.create_task(keep_alive(interval))
    ...
    notify("STOPPING=1")
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping

import structlog

__all__ = ["keep_alive", "notify", "socket_address", "watchdog_interval"]

log = structlog.get_logger(__name__)


def socket_address(env: Mapping[str, str] | None = None) -> str | bytes | None:
    """The notification socket from ``NOTIFY_SOCKET``, or None when not run by systemd.

    A leading ``@`` names a Linux abstract socket (returned as bytes with a leading NUL);
    other schemes systemd may use (``vsock:``) are not supported here and give None.
    """
    value = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    if value:
        log.warning("sdnotify.unsupported_socket", address=value)
    return None


def notify(state: str, *, env: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (newline-separated ``KEY=value`` assignments) to systemd.

    True when the datagram was sent; False when there is no notification socket or
    sending failed (logged: a missed notification must never stop the daemon).
    """
    address = socket_address(env)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as err:
        log.warning("sdnotify.failed", state=state.split("\n", 1)[0], error=str(err))
        return False
    return True


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None
                      ) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None.

    None when systemd runs no watchdog for this process: ``WATCHDOG_USEC`` unset, not a
    positive integer, or ``WATCHDOG_PID`` naming another process (a child that inherited
    the environment must not ping for its parent).
    """
    values = os.environ if env is None else env
    raw_usec = values.get("WATCHDOG_USEC", "")
    raw_pid = values.get("WATCHDOG_PID", "")
    if raw_pid:
        if not raw_pid.isdigit() or int(raw_pid) != (os.getpid() if pid is None else pid):
            return None
    if not raw_usec.isdigit() or int(raw_usec) == 0:
        return None
    return int(raw_usec) / 2_000_000


async def keep_alive(interval: float, *, send: Callable[[str], bool] = notify) -> None:
    """Ping the watchdog every ``interval`` seconds until cancelled.

    It runs on the event loop on purpose: when the loop stalls the pings stop and
    systemd restarts the daemon, which is what the watchdog is for.
    """
    if interval <= 0:
        raise ValueError(f"watchdog interval must be positive, got {interval!r}")
    while True:
        send("WATCHDOG=1")
        await asyncio.sleep(interval)
