"""The client API: publish jobs through a running master's control socket and gather returns.

This is what ``cloud-master run`` uses, and what Python code on the master host uses in
place of Salt's LocalClient::

    client = MasterClient.from_config("/etc/cloud-master/master.yaml")
    client.cmd("car-*", "test.ping")   # {"car-0001": True, ...}
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from autopi_proto import codec


class MasterUnavailable(ConnectionError):
    """No master answered on the control socket."""


@dataclass(slots=True)
class JobOutcome:
    """Everything a finished (or timed-out) job produced."""

    jid: str
    minions: list[str]
    returns: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


class MasterClient:
    """A connection to one master's control socket (not thread-safe; one per thread)."""

    def __init__(self, sock_dir: str | Path, *, ctx: zmq.Context[Any] | None = None) -> None:
        self.path = Path(sock_dir) / "master-control.ipc"
        self._ctx = ctx or zmq.Context.instance()
        self._sock: zmq.Socket[Any] | None = None

    @classmethod
    def from_opts(cls, opts: Mapping[str, Any]) -> MasterClient:
        return cls(opts["sock_dir"])

    def _socket(self) -> zmq.Socket[Any]:
        if self._sock is None:
            if not self.path.exists():
                raise MasterUnavailable(
                    f"no master control socket at {self.path}: is `cloud-master serve` running "
                    "with the same config (sock_dir)?")
            sock = self._ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(f"ipc://{self.path}")
            self._sock = sock
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def __enter__(self) -> MasterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, request: dict[str, Any]) -> None:
        self._socket().send_multipart([b"", codec.packb(request)])

    def _recv(self, timeout: float) -> dict[str, Any]:
        sock = self._socket()
        if not sock.poll(max(0, int(timeout * 1000))):
            self.close()  # a late answer must not be read as the next one
            raise MasterUnavailable(f"the master did not answer on {self.path} within {timeout:.0f} s")
        frames = sock.recv_multipart()
        reply = codec.unpackb(frames[-1])
        if not isinstance(reply, dict):
            raise MasterUnavailable(f"unexpected reply from the master: {reply!r:.80}")
        if "error" in reply:
            raise ValueError(reply["error"])
        return reply

    def ping(self, timeout: float = 2.0) -> dict[str, Any]:
        self._send({"cmd": "ping"})
        return self._recv(timeout)

    def keys_changed(self, timeout: float = 2.0) -> None:
        """Tell the master the key store changed (it rotates the shared key if needed)."""
        self._send({"cmd": "keys_changed"})
        self._recv(timeout)

    def runner(self, fun: str, arg: list[Any] | None = None, *, timeout: float = 60.0) -> Any:
        """Run a runner (``manage.status``...) in the master; its return value."""
        self._send({"cmd": "runner", "fun": fun, "arg": list(arg or [])})
        return self._recv(timeout)["return"]

    def publish(self, tgt: str | list[str], fun: str, arg: list[Any] | None = None, *,
                tgt_type: str = "glob", ret: str = "", user: str = "") -> tuple[str, list[str]]:
        """Publish without waiting for returns; the jid and the minions expected."""
        self._send({"cmd": "publish", "tgt": tgt, "fun": fun, "arg": list(arg or []),
                    "tgt_type": tgt_type, "ret": ret, "user": user, "stream": False})
        reply = self._recv(5.0)
        return reply["jid"], list(reply["minions"])

    def run_iter(self, tgt: str | list[str], fun: str, arg: list[Any] | None = None, *,
                 tgt_type: str = "glob", timeout: float = 5.0, ret: str = "",
                 user: str = "") -> Iterator[dict[str, Any]]:
        """Yield ``{"jid", "minions"}``, then each return as it arrives, then ``{"done", "missing"}``."""
        self._send({"cmd": "publish", "tgt": tgt, "fun": fun, "arg": list(arg or []),
                    "tgt_type": tgt_type, "ret": ret, "user": user, "stream": True,
                    "timeout": timeout})
        deadline = time.monotonic() + timeout + 5.0
        first = self._recv(5.0)
        yield first
        while True:
            reply = self._recv(max(0.1, deadline - time.monotonic()))
            yield reply
            if reply.get("done"):
                return

    def run(self, tgt: str | list[str], fun: str, arg: list[Any] | None = None, *,
            tgt_type: str = "glob", timeout: float = 5.0, ret: str = "") -> JobOutcome:
        outcome: JobOutcome | None = None
        for item in self.run_iter(tgt, fun, arg, tgt_type=tgt_type, timeout=timeout, ret=ret):
            if "minions" in item and outcome is None:
                outcome = JobOutcome(item["jid"], item["minions"])
            elif "return" in item and outcome is not None:
                outcome.returns[item["return"]["id"]] = item["return"]
            elif item.get("done") and outcome is not None:
                outcome.missing = list(item.get("missing", []))
        assert outcome is not None
        return outcome

    def cmd(self, tgt: str | list[str], fun: str, arg: list[Any] | None = None, *,
            tgt_type: str = "glob", timeout: float = 5.0) -> dict[str, Any]:
        """Like Salt's ``LocalClient.cmd``: ``{minion_id: return}`` of those that answered."""
        outcome = self.run(tgt, fun, arg, tgt_type=tgt_type, timeout=timeout)
        return {mid: r["return"] for mid, r in outcome.returns.items()}
