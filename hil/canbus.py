"""Open python-can buses for the simulator: virtual (in-process), udp_multicast, socketcan."""

from __future__ import annotations

import ipaddress
import socket
import uuid
from dataclasses import dataclass, replace
from typing import Any

import can
import structlog

from hil.errors import BusError

log = structlog.get_logger(__name__)

DEFAULT_MULTICAST_GROUP = "239.74.163.2"  # python-can's IPv4 default group
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class BusConfig:
    """Which CAN bus the car's nodes share.

    `options` are extra keyword arguments for `can.Bus` (e.g. `("port", 43114)` for
    udp_multicast, `("bitrate", 500000)` for hardware). With `loopback` on, an IPv4
    udp_multicast bus is pinned to 127.0.0.1 so simulator traffic never leaves the host.
    """

    interface: str = "virtual"
    channel: str | None = None
    options: tuple[tuple[str, Any], ...] = ()
    loopback: bool = True

    def resolved(self) -> BusConfig:
        """Fill in a channel: a fresh virtual channel per car, python-can's IPv4 group for udp."""
        if self.channel is not None:
            return self
        if self.interface == "virtual":
            return replace(self, channel=f"hil-{uuid.uuid4().hex[:12]}")
        if self.interface == "udp_multicast":
            return replace(self, channel=DEFAULT_MULTICAST_GROUP)
        if self.interface == "socketcan":
            return replace(self, channel="can0")
        raise BusError(f"bus interface {self.interface!r} needs a channel (--channel)")

    def describe(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in self.options)
        return f"{self.interface}:{self.channel}{extra}"


def _is_ipv4(group: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(group), ipaddress.IPv4Address)
    except ValueError:
        return False


def pin_to_loopback(bus: can.BusABC, group: str) -> None:
    """Move an IPv4 udp_multicast bus's group membership and sends onto 127.0.0.1.

    python-can joins the group on the default interface, so its frames would go out on
    the LAN (TTL 1). IPv6 multicast cannot use `lo` on Linux (ENETUNREACH), hence IPv4.
    The socket is reached through a dup of `bus.fileno()`; closing the dup leaves the
    bus's own socket open.
    """
    group_bytes = socket.inet_aton(group)
    with socket.fromfd(bus.fileno(), socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.setsockopt(
                socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, group_bytes + socket.inet_aton("0.0.0.0")
            )
        except OSError:
            pass  # not joined on the default interface (no multicast route): nothing to drop
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group_bytes + socket.inet_aton(LOOPBACK))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LOOPBACK))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)


def open_bus(config: BusConfig) -> can.BusABC:
    """Open one node's connection to the bus described by `config` (already `resolved`)."""
    if config.channel is None:
        raise BusError("open_bus needs a resolved BusConfig (call .resolved() first)")
    kwargs = dict(config.options)
    if config.interface == "virtual":
        kwargs.setdefault("receive_own_messages", False)
    try:
        bus = can.Bus(interface=config.interface, channel=config.channel, **kwargs)
    except (can.CanError, OSError, ValueError, ImportError) as err:
        raise BusError(f"cannot open CAN bus {config.describe()}: {err}") from err
    if config.interface == "udp_multicast" and config.loopback and _is_ipv4(config.channel):
        try:
            pin_to_loopback(bus, config.channel)
        except OSError as err:
            bus.shutdown()
            raise BusError(f"cannot keep udp_multicast group {config.channel} on {LOOPBACK}: {err}") from err
    log.debug("bus.opened", bus=config.describe())
    return bus
