"""sd_notify against real AF_UNIX datagram sockets, as systemd's manager receives them."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from autopi_agent import sdnotify

SCM_CREDENTIALS = 2  # Linux: struct ucred {pid, uid, gid}
UCRED = struct.Struct("iII")


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket that asks the kernel for each sender's credentials."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.bind(str(path))
    sock.settimeout(5)
    try:
        yield sock, str(path)
    finally:
        sock.close()


def receive(sock: socket.socket) -> tuple[str, int]:
    """One datagram's text and the sender's pid (what NotifyAccess=main checks)."""
    data, ancdata, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(UCRED.size))
    pid = -1
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == SCM_CREDENTIALS:
            pid = UCRED.unpack(payload[: UCRED.size])[0]
    return data.decode(), pid


def test_notify_sends_the_state_as_one_datagram_from_this_process(
        receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    assert sdnotify.notify("READY=1\nSTATUS=connecting", env={"NOTIFY_SOCKET": path}) is True
    assert receive(sock) == ("READY=1\nSTATUS=connecting", os.getpid())


def test_notify_reads_notify_socket_from_the_environment(
        receiver: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch) -> None:
    sock, path = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert sdnotify.notify("STOPPING=1") is True
    assert receive(sock)[0] == "STOPPING=1"


def test_notify_reaches_an_abstract_socket() -> None:
    name = f"autopi-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        assert sdnotify.notify("WATCHDOG=1", env={"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_without_notify_socket_nothing_is_sent() -> None:
    assert sdnotify.socket_address({}) is None
    assert sdnotify.notify("READY=1", env={}) is False


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    missing = str(tmp_path / "gone.sock")
    assert sdnotify.notify("READY=1", env={"NOTIFY_SOCKET": missing}) is False


def test_unsupported_addresses_are_refused() -> None:
    assert sdnotify.socket_address({"NOTIFY_SOCKET": "vsock:2:1234"}) is None
    assert sdnotify.socket_address({"NOTIFY_SOCKET": "@"}) is None
    assert sdnotify.notify("READY=1", env={"NOTIFY_SOCKET": "relative/path"}) is False


@pytest.mark.parametrize(("env", "pid", "expected"), [
    ({"WATCHDOG_USEC": "30000000"}, 42, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "43"}, 42, None),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, 42, None),
    ({"WATCHDOG_USEC": "0"}, 42, None),
    ({"WATCHDOG_USEC": "-5"}, 42, None),
    ({"WATCHDOG_USEC": "soon"}, 42, None),
    ({}, 42, None),
])
def test_watchdog_interval_is_half_the_timeout_for_the_right_process(
        env: dict[str, str], pid: int, expected: float | None) -> None:
    assert sdnotify.watchdog_interval(env, pid=pid) == expected


def test_watchdog_interval_defaults_to_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 1.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sdnotify.watchdog_interval() is None


def test_keep_alive_pings_until_cancelled(receiver: tuple[socket.socket, str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    sock, path = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", path)

    async def run() -> None:
        task = asyncio.create_task(sdnotify.keep_alive(0.01))
        try:
            pings = [await asyncio.to_thread(receive, sock) for _ in range(3)]
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert pings == [("WATCHDOG=1", os.getpid())] * 3

    asyncio.run(run())


def test_keep_alive_refuses_a_useless_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        asyncio.run(sdnotify.keep_alive(0))

