"""`autopi-agent call` through the running daemon, over a unix socket in ``sock_dir``.

On a dongle the daemon owns the OBD adapter, the power MCU, the loggers and the spool; a
second process opening the same serial ports would garble both conversations. So while the
daemon runs, a local call is sent to it and runs in its dispatcher (same functions, same
arguments, same return), unless ``--local`` asks for this process. The socket is 0600 in a
0700 directory: whoever may use it could read the agent's key anyway.

Framing: a 4-byte big-endian length, then msgpack (the wire codec). Request
``{"fun", "arg", "timeout"}``; reply ``{"ret", "retcode", "outputter"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from autopi_agent.minion.dispatch import JobResult
from autopi_proto import codec

__all__ = ["SOCKET_NAME", "CallServer", "DaemonCallError", "call_daemon", "serve_local_calls",
           "socket_path"]

log = structlog.get_logger(__name__)

SOCKET_NAME = "agent-call.sock"
MAX_FRAME = 16 << 20  # a request or a reply (a state run's return can be large)
_LENGTH = struct.Struct(">I")

Run = Callable[[str, Sequence[Any], float | None], Awaitable[JobResult]]


class DaemonCallError(Exception):
    """The daemon took the call but the exchange failed (it stopped, a bad frame)."""


def socket_path(opts: Mapping[str, Any]) -> Path:
    """Where the daemon of this config listens for local calls."""
    return Path(str(opts["sock_dir"])) / SOCKET_NAME


class CallServer:
    """The daemon's end: one task per connection, one call per connection."""

    def __init__(self, path: Path, run: Run, outputter: Callable[[str], str | None]) -> None:
        self.path = path
        self._run = run
        self._outputter = outputter
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a daemon that died: nobody listens on it
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        os.chmod(self.path, 0o600)
        log.info("localcall.listening", path=str(self.path))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = codec.unpackb(await _read_frame(reader), max_size=MAX_FRAME)
            fun, arg = str(request["fun"]), list(request.get("arg") or [])
            timeout = request.get("timeout")
            log.info("localcall.received", fun=fun)
            result = await self._run(fun, arg, float(timeout) if timeout else None)
            reply = {"ret": result.ret, "retcode": result.retcode,
                     "outputter": self._outputter(fun)}
            writer.write(_frame(codec.packb(reply)))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, KeyError, TypeError,
                ValueError) as err:
            log.warning("localcall.bad_request", error=f"{type(err).__name__}: {err}")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def serve_local_calls(path: Path, run: Run,
                            outputter: Callable[[str], str | None]) -> CallServer | None:
    """A started CallServer, or None (logged) when the socket cannot be made."""
    server = CallServer(path, run, outputter)
    try:
        await server.start()
    except OSError as err:  # e.g. a sock_dir path too long for a unix socket
        log.warning("localcall.unavailable", path=str(path), error=str(err))
        return None
    return server


def call_daemon(path: Path, fun: str, arg: Sequence[Any], timeout: float | None,
                wait: float) -> dict[str, Any] | None:
    """Run ``fun`` in the daemon listening at ``path``; None when no daemon listens there.

    ``timeout`` bounds the job in the daemon (None: its ``job_timeout``); ``wait`` bounds
    how long this side waits for the reply.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(2.0)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return None  # no daemon (or a socket file a dead one left behind)
        except PermissionError as err:
            raise DaemonCallError(f"cannot reach the agent daemon at {path} ({err.strerror}): "
                                  "run as root or as the agent's user, or add --local") from None
        sock.sendall(_frame(codec.packb({"fun": fun, "arg": list(arg), "timeout": timeout})))
        sock.settimeout(wait)
        try:
            length = _LENGTH.unpack(_recv_exactly(sock, _LENGTH.size))[0]
            if length > MAX_FRAME:
                raise DaemonCallError(f"the agent daemon's reply is too large ({length} bytes)")
            reply = codec.unpackb(_recv_exactly(sock, length), max_size=MAX_FRAME)
        except (OSError, EOFError) as err:
            raise DaemonCallError(f"the agent daemon did not finish the call: {err}") from err
        if not isinstance(reply, dict):
            raise DaemonCallError("the agent daemon sent a malformed reply")
        return reply
    finally:
        sock.close()


def _frame(body: bytes) -> bytes:
    return _LENGTH.pack(len(body)) + body


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    length = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))[0]
    if length > MAX_FRAME:
        raise ValueError(f"a {length}-byte request is over the {MAX_FRAME}-byte limit")
    return await reader.readexactly(length)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise EOFError("the connection closed early")
        chunks += chunk
    return bytes(chunks)
