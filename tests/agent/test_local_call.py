"""`autopi-agent call` runs in the running daemon (which owns the adapter, the MCU and the
loggers); with ``--local``, or when no daemon listens, it runs in its own process."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from autopi_agent.minion.localcall import SOCKET_NAME, call_daemon
from tests.inproc import running_agent, running_master

CLI = Path(sys.executable).parent / "autopi-agent"
LOGGERS = {"slow": {"pids": ["RPM"], "interval": 3600, "requires": "none"}}


def call(config: Path, *args: str) -> tuple[int, Any]:
    done = subprocess.run([str(CLI), "-c", str(config), "call", *args, "--out", "json"],
                          capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout)["local"] if done.stdout else done.stderr


def send_garbage(path: Path) -> None:
    """An oversized length, then a closed connection: what a confused client might send."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(b"\xff\xff\xff\xff garbage")
        assert sock.recv(16) == b""  # the daemon hangs up without a reply


def config_for(root: Path) -> Path:
    path = root / "agent.yaml"
    path.write_text(yaml.safe_dump({"id": "car-0001", "root_dir": str(root),
                                    "loggers": LOGGERS}))
    return path


def test_a_call_runs_in_the_daemon_and_local_runs_here(tmp_path: Path) -> None:
    root = tmp_path / "a"

    async def scenario() -> None:
        async with running_master(tmp_path / "m") as master, \
                running_agent(root, master, "car-0001", loggers=LOGGERS):
            config = config_for(root)
            code, status = await asyncio.to_thread(call, config, "loggers.status")
            assert code == 0 and status["running"] is True  # answered by the daemon
            code, local = await asyncio.to_thread(call, config, "loggers.status", "--local")
            assert code == 0 and local["running"] is False
            code, echoed = await asyncio.to_thread(call, config, "test.echo", "hello there")
            assert (code, echoed) == (0, "hello there")
            code, missing = await asyncio.to_thread(call, config, "nope.missing")
            assert code == 1 and "nope.missing" in str(missing)
            await asyncio.to_thread(send_garbage, root / "run" / SOCKET_NAME)
            code, status = await asyncio.to_thread(call, config, "loggers.status")
            assert code == 0 and status["running"] is True  # the daemon shrugged it off
        assert not (root / "run" / SOCKET_NAME).exists()  # removed when the daemon stops

    asyncio.run(scenario())


def test_a_socket_left_by_a_dead_daemon_is_ignored(tmp_path: Path) -> None:
    root = tmp_path / "a"
    (root / "run").mkdir(parents=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(root / "run" / SOCKET_NAME))
    dead.close()  # the file stays, nobody listens: as after a crash
    assert call_daemon(root / "run" / SOCKET_NAME, "test.ping", [], None, 10) is None
    code, status = call(config_for(root), "loggers.status")
    assert code == 0 and status["running"] is False  # ran in this process
