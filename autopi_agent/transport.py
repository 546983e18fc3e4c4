"""The agent's two ZeroMQ links to the master: requests on 4506 and publishes from 4505.

``MasterLink`` authenticates (with retries while the key is pending), holds the shared and
session keys, and sends encrypted requests one at a time on a DEALER socket (re-created
after a timeout so a late reply is never mistaken for the next one). Both sockets use
ZeroMQ heartbeats and TCP keepalive, so a half-open cellular link is noticed and
reconnected with exponential backoff and per-agent jitter.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from typing import Any

import structlog
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from autopi_agent.keys import MasterKeyCache, MasterKeyMismatch, MinionKeys
from autopi_proto import codec, messages, rsa
from autopi_proto.crypticle import Crypticle
from autopi_proto.errors import AuthenticationError, DecodeError, ProtoError

log = structlog.get_logger(__name__)

_LINK_LOST = zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL


class TransportError(Exception):
    """Root of the agent's transport errors.

    TransportError
     ├── RequestTimeout (TimeoutError)   the master did not answer in time
     ├── NotAccepted                     the master refused or has not yet accepted our key
     └── MasterRejected                  the master's identity could not be verified
    """


class RequestTimeout(TransportError, TimeoutError):
    """The master did not answer a request in time."""


class NotAccepted(TransportError):
    """Our key is pending, rejected or denied on the master."""


class MasterRejected(TransportError):
    """The master's key or signatures did not verify: we will not talk to it."""


def master_host(opts: Mapping[str, Any]) -> str:
    master = opts["master"]
    host = master[0] if isinstance(master, list) else master
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def tune(sock: zmq.asyncio.Socket, opts: Mapping[str, Any]) -> None:
    """Heartbeats, keepalive and jittered exponential reconnect on one socket."""
    sock.setsockopt(zmq.LINGER, 0)
    recon = int(opts.get("recon_default", 1000))
    if opts.get("recon_randomize", True):
        recon += random.randint(0, recon)  # spread a fleet's reconnects apart
    sock.setsockopt(zmq.RECONNECT_IVL, recon)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, max(recon, int(opts.get("recon_max", 10000))))
    interval = int(float(opts.get("heartbeat_interval", 15)) * 1000)
    timeout = int(float(opts.get("heartbeat_timeout", 45)) * 1000)
    sock.setsockopt(zmq.HEARTBEAT_IVL, interval)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, timeout)
    sock.setsockopt(zmq.HEARTBEAT_TTL, timeout)
    sock.setsockopt(zmq.HANDSHAKE_IVL, timeout)
    if opts.get("tcp_keepalive", True):
        sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
        sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, int(opts.get("tcp_keepalive_idle", 30)))
        sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, int(opts.get("tcp_keepalive_cnt", 3)))
        sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, int(opts.get("tcp_keepalive_intvl", 10)))


class MasterLink:
    """Authentication and the request channel to one master."""

    def __init__(self, opts: Mapping[str, Any], keys: MinionKeys, master_keys: MasterKeyCache,
                 ctx: zmq.asyncio.Context) -> None:
        self.opts = opts
        self.minion_id = str(opts["id"])
        self.keys = keys
        self.master_keys = master_keys
        self.ctx = ctx
        self.address = f"tcp://{master_host(opts)}:{opts['master_port']}"
        self.aes: Crypticle | None = None
        self.session: Crypticle | None = None
        self.master_pub: rsa.RSAPublicKey | None = None
        self.publish_port = int(opts["publish_port"])
        self.authenticated = asyncio.Event()
        self._tok = rsa.x931_sign(keys.private_key, messages.TOKEN_PLAINTEXT)
        self._sock: zmq.asyncio.Socket | None = None
        self._monitor: zmq.asyncio.Socket | None = None
        self._closed = False
        self._lock = asyncio.Lock()
        self._auth_lock = asyncio.Lock()
        self._enc = str(opts.get("encryption_algorithm", rsa.DEFAULT_ENCRYPTION))
        self._sig = str(opts.get("signing_algorithm", rsa.DEFAULT_SIGNING))

    # -- raw round trips -----------------------------------------------------------------

    def _socket(self) -> zmq.asyncio.Socket:
        if self._sock is None:
            sock = self.ctx.socket(zmq.DEALER)
            tune(sock, self.opts)
            self._monitor = sock.get_monitor_socket(_LINK_LOST)
            sock.connect(self.address)
            self._sock = sock
        return self._sock

    def reset(self) -> None:
        """Drop the request socket; the next request opens a fresh one."""
        if self._sock is not None:
            self._sock.disable_monitor()
            if self._monitor is not None:
                self._monitor.close(0)
                self._monitor = None
            self._sock.close(0)
            self._sock = None

    def close(self) -> None:
        """Drop the request socket for good: requests in flight or later fail at once."""
        self._closed = True
        self.reset()

    async def roundtrip(self, message: Mapping[str, Any], timeout: float) -> Any:
        """Send one request and wait for its reply; RequestTimeout after ``timeout`` s.

        If the link drops while we wait, the request is sent again on a fresh socket (the
        old socket, and any late reply on it, is discarded): every request we make is safe
        to repeat, and this bounds recovery after a half-open link by the heartbeat timeout.
        """
        frame = codec.packb(dict(message))
        deadline = time.monotonic() + timeout
        async with self._lock:
            while True:
                if self._closed:
                    raise TransportError(f"the link to {self.address} is closed")
                sock = self._socket()
                await sock.send_multipart([b"", frame])
                outcome = await self._await_reply(sock, deadline)
                if outcome == "reply":
                    frames = await sock.recv_multipart()
                    return codec.unpackb(frames[-1])
                self.reset()
                if outcome == "timeout":
                    raise RequestTimeout(f"no reply from {self.address} within {timeout:.0f} s")
                log.info("request.resend", master=self.address, reason="link dropped")

    async def _await_reply(self, sock: zmq.asyncio.Socket, deadline: float) -> str:
        poller = zmq.asyncio.Poller()
        poller.register(sock, zmq.POLLIN)
        assert self._monitor is not None
        poller.register(self._monitor, zmq.POLLIN)
        while (left := deadline - time.monotonic()) > 0:
            try:
                ready = dict(await poller.poll(int(left * 1000) + 1))
            except asyncio.CancelledError:
                # reset() from another task closed this socket under the poll: resend on a
                # fresh one. A real cancellation of this task still propagates.
                task = asyncio.current_task()
                if sock.closed and task is not None and not task.cancelling():
                    return "dropped"
                raise
            if sock in ready:
                return "reply"
            if self._monitor in ready:
                await self._monitor.recv_multipart()
                return "dropped"
        return "timeout"

    # -- authentication ------------------------------------------------------------------

    async def authenticate(self, *, forever: bool = True) -> None:
        """Authenticate, waiting ``acceptance_wait_time`` between tries while pending.

        With ``forever`` False a pending/refused key raises NotAccepted after one try.
        """
        async with self._auth_lock:
            self.authenticated.clear()
            wait = float(self.opts.get("acceptance_wait_time", 10))
            wait_max = float(self.opts.get("acceptance_wait_time_max", 0)) or wait
            while True:
                try:
                    await self._auth_once()
                    self.authenticated.set()
                    return
                except (NotAccepted, RequestTimeout) as err:
                    if not forever:
                        raise
                    log.info("auth.retry", master=self.address, reason=str(err), wait=wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, wait_max) if wait_max > wait else wait

    async def _auth_once(self) -> None:
        cached = self.master_keys.cached()
        token = None
        request = messages.AuthRequest(self.minion_id, rsa.clean_pem(self.keys.public_pem),
                                       messages.new_nonce(), self._enc, self._sig)
        if cached is not None:
            token = messages.new_nonce().encode()
            request = messages.AuthRequest(request.minion_id, request.pub, request.nonce,
                                           self._enc, self._sig,
                                           rsa.encrypt(rsa.load_public(cached), token, self._enc))
        reply = await self.roundtrip(messages.auth_request(request),
                                     float(self.opts.get("auth_timeout", 60)))
        try:
            outcome = messages.parse_auth_reply(reply, request, self.keys.private_key, cached, token)
        except (AuthenticationError, DecodeError) as err:
            raise MasterRejected(f"auth reply from {self.address} did not verify: {err}") from err
        if outcome.status != "accepted":
            raise NotAccepted(f"key {outcome.status} on the master")
        assert outcome.master_pub and outcome.aes and outcome.session
        try:
            self.master_keys.check(outcome.master_pub)
        except MasterKeyMismatch as err:
            raise MasterRejected(str(err)) from err
        self.master_pub = rsa.load_public(outcome.master_pub)
        self.aes = Crypticle(outcome.aes)
        self.session = Crypticle(outcome.session)
        if outcome.publish_port and outcome.publish_port != self.publish_port:
            # The configured port wins: behind NAT or a port-forwarding proxy the master's
            # own idea of its port is not the one this agent can reach.
            log.info("auth.publish_port_differs", configured=self.publish_port,
                     advertised=outcome.publish_port)
        log.info("auth.accepted", master=self.address, publish_port=self.publish_port)

    # -- encrypted requests --------------------------------------------------------------

    async def request(self, load: Mapping[str, Any], timeout: float | None = None) -> Any:
        """An encrypted request; re-authenticates once if the master no longer knows us."""
        timeout = float(timeout or self.opts.get("return_timeout", 60))
        await self.authenticated.wait()
        try:
            return await self._request_once(load, timeout)
        except AuthenticationError as err:
            log.info("request.reauth", reason=str(err))
            await self.authenticate(forever=False)
            return await self._request_once(load, timeout)

    async def _request_once(self, load: Mapping[str, Any], timeout: float) -> Any:
        session = self.session
        if session is None:
            raise AuthenticationError("not authenticated")
        nonce = messages.new_nonce()
        envelope = messages.aes_request(load, minion_id=self.minion_id, session=session,
                                        tok=self._tok, nonce=nonce, enc_algo=self._enc,
                                        sig_algo=self._sig)
        reply = await self.roundtrip(envelope, timeout)
        return messages.open_reply(reply, session, nonce)

    async def request_private(self, load: Mapping[str, Any], dictkey: str = "pillar",
                              timeout: float | None = None) -> Any:
        """A request whose reply is encrypted to this minion alone (pillar)."""
        await self.authenticated.wait()
        session, master_pub = self.session, self.master_pub
        if session is None or master_pub is None:
            raise AuthenticationError("not authenticated")
        nonce = messages.new_nonce()
        envelope = messages.aes_request(load, minion_id=self.minion_id, session=session,
                                        tok=self._tok, nonce=nonce, enc_algo=self._enc,
                                        sig_algo=self._sig)
        reply = await self.roundtrip(envelope, float(timeout or self.opts.get("return_timeout", 60)))
        return messages.open_private_reply(reply, minion_key=self.keys.private_key,
                                           master_pub=master_pub, nonce=nonce, dictkey=dictkey,
                                           enc_algo=self._enc, sig_algo=self._sig)


class Subscription:
    """The SUB socket on 4505, with a monitor that reports reconnections."""

    def __init__(self, opts: Mapping[str, Any], ctx: zmq.asyncio.Context, port: int) -> None:
        self.sock = ctx.socket(zmq.SUB)
        tune(self.sock, opts)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        # Connected means handshake done: the subscription goes out right after it, so a
        # publish made after that point reaches us (a bare TCP connect is too early).
        self.monitor = self.sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        self.address = f"tcp://{master_host(opts)}:{port}"
        self.sock.connect(self.address)
        self.connected_at: float | None = None
        self.up = asyncio.Event()  # set while the handshake with the publisher holds

    async def recv(self) -> bytes:
        frames = await self.sock.recv_multipart()
        return bytes(frames[-1])  # with zmq_filtering the first frame is a topic

    async def link_events(self) -> Any:
        """Yield "connected"/"disconnected" as the link to the publisher changes."""
        while True:
            event = parse_monitor_message(await self.monitor.recv_multipart())
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected_at = time.monotonic()
                self.up.set()
                yield "connected"
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                self.connected_at = None
                self.up.clear()
                yield "disconnected"

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(0)
        self.sock.close(0)


__all__ = ["MasterLink", "Subscription", "TransportError", "RequestTimeout", "NotAccepted",
           "MasterRejected", "ProtoError"]
