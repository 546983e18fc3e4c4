"""The master daemon's sockets: ROUTER on 4506, PUB on 4505, and a local control socket.

One asyncio loop. Every request runs as its own task (bounded), so one slow or malicious
client never holds up another. The control socket (IPC, under ``sock_dir``, mode 0700)
is how the CLI and the client API publish jobs and follow their returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog
import zmq
import zmq.asyncio

from autopi_common.fsutil import ensure_dir
from autopi_proto import codec, messages, targeting
from autopi_proto.errors import DecodeError
from autopi_proto.jid import gen_jid
from cloud_master.config import load_preseed_keys
from cloud_master.events import EventBus
from cloud_master.ingest import TelemetryIngest
from cloud_master.jobcache import Job, JobCache, SqliteJobCache
from cloud_master.jobs import JobTracker
from cloud_master.minions import MinionData
from cloud_master.pki import KeyState, KeyStore
from cloud_master.reactor import Reactor
from cloud_master.reqserver import RequestHandler, SharedKey
from cloud_master.runners import RunnerError, RunnerLoader
from cloud_master.runners.presence import Presence

log = structlog.get_logger(__name__)

MAX_IN_FLIGHT = 512


def control_address(opts: Mapping[str, Any]) -> str:
    """The IPC address of a master's control socket."""
    return f"ipc://{Path(opts['sock_dir']) / 'master-control.ipc'}"


def events_address(opts: Mapping[str, Any]) -> str:
    """The IPC address of a master's event publisher."""
    return f"ipc://{Path(opts['sock_dir']) / 'master-events.ipc'}"


class Master:
    """A running master: key store, job cache, event bus, sockets."""

    def __init__(self, opts: Mapping[str, Any], *, ctx: zmq.asyncio.Context | None = None,
                 jobcache: JobCache | None = None) -> None:
        self.opts = opts
        self.ctx = ctx or zmq.asyncio.Context()
        self._own_ctx = ctx is None
        self.keys = KeyStore(opts["pki_dir"], int(opts.get("keysize", 2048)))
        cachedir = ensure_dir(opts["cachedir"], 0o700)
        self.jobcache = jobcache or SqliteJobCache(cachedir / "jobs.sqlite")
        self.events = EventBus()
        self.tracker = JobTracker(keep_seconds=float(opts.get("keep_jobs", 24)) * 3600)
        self.minions = MinionData(cachedir)
        self.shared = SharedKey()
        preseed = opts.get("preseed_keys_file")
        self.telemetry = TelemetryIngest.from_opts(dict(opts))
        self.handler = RequestHandler(opts, self.keys, self.jobcache, self.tracker, self.events,
                                      self.minions, self.shared,
                                      load_preseed_keys(preseed) if preseed else {},
                                      telemetry=self.telemetry)
        self.presence = Presence()
        self.runners = RunnerLoader()
        self.reactor = Reactor.from_opts(self, self.runners)
        self._accepted: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._stopping = asyncio.Event()
        self._last_expiry = 0.0
        self.router: zmq.asyncio.Socket | None = None
        self.pub: zmq.asyncio.Socket | None = None
        self.control: zmq.asyncio.Socket | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def bind(self) -> None:
        """Create the master key and bind every socket (raises if a port is taken)."""
        self.keys.master_keys()
        self._accepted = set(self.keys.list().get(KeyState.ACCEPTED, []))
        host = self.opts["interface"]
        self.router = self._socket(zmq.ROUTER)
        self.router.setsockopt(zmq.MAXMSGSIZE, int(self.opts.get("max_request_size", 16 << 20)))
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.router.bind(f"tcp://{_host(host)}:{self.opts['ret_port']}")
        self.pub = self._socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, 100000)
        self.pub.bind(f"tcp://{_host(host)}:{self.opts['publish_port']}")
        sock_dir = ensure_dir(self.opts["sock_dir"], 0o700)
        os.chmod(sock_dir, 0o700)
        self.control = self._socket(zmq.ROUTER)
        # A ROUTER drops what exceeds its send limit: a job's returns must all reach the CLI.
        self.control.setsockopt(zmq.SNDHWM, 0)
        self.control.bind(control_address(self.opts))
        self.events.bind(self.ctx, events_address(self.opts))
        log.info("master.listening", interface=host, ret_port=self.opts["ret_port"],
                 publish_port=self.opts["publish_port"], finger=self.keys.master_keys().fingerprint())

    def _socket(self, kind: int) -> zmq.asyncio.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.HEARTBEAT_IVL, 15000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 45000)
        sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
        sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 30)
        sock.setsockopt(zmq.BACKLOG, 1024)  # a fleet reconnecting after a restart
        return sock

    async def serve(self) -> None:
        """Run until ``stop()``; binds first if needed."""
        if self.router is None:
            self.bind()
        loops = [self._serve_requests(), self._serve_control(), self._maintain(),
                 self.presence.watch(self.events), self.reactor.run()]
        workers = [asyncio.create_task(loop) for loop in loops]
        try:
            await self._stopping.wait()
        finally:
            for task in workers + list(self._tasks):
                task.cancel()
            await asyncio.gather(*workers, *self._tasks, return_exceptions=True)
            self.close()

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        for sock in (self.router, self.pub, self.control):
            if sock is not None:
                sock.close(0)
        self.router = self.pub = self.control = None
        self.events.close()
        self.jobcache.close()
        self.telemetry.close()
        if self._own_ctx:
            self.ctx.term()

    # -- request channel -----------------------------------------------------------------

    async def _serve_requests(self) -> None:
        assert self.router is not None
        while True:
            frames = await self.router.recv_multipart(copy=True)
            if len(frames) < 2:
                continue
            await self._in_flight.acquire()
            self._spawn(self._answer(frames[:-1], frames[-1]))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, route: list[bytes], body: bytes) -> None:
        try:
            reply = await self.handler.handle(body)
            if reply is not None and self.router is not None:
                await self.router.send_multipart([*route, reply])
        except Exception:  # a bug must not take the server down
            log.exception("request.crashed")
        finally:
            self._in_flight.release()

    # -- publishing ----------------------------------------------------------------------

    def expected_minions(self, tgt: str | list[str], tgt_type: str) -> list[str]:
        """The accepted minions a target selects, using cached grains where needed."""
        accepted = self.keys.list().get(KeyState.ACCEPTED, [])
        return sorted(m for m in accepted
                      if targeting.matches(tgt, tgt_type, m, self.minions.grains(m)))

    async def publish(self, fun: str, arg: list[Any], tgt: str | list[str] = "*",
                      tgt_type: str = "glob", ret: str = "", user: str = "",
                      jid: str | None = None) -> tuple[str, list[str]]:
        """Publish a job to the minions; returns its jid and the minions expected to answer."""
        pub, expected = self.register_job(fun, arg, tgt, tgt_type, ret, user, jid)
        await self.send_job(pub, expected)
        return pub.jid, expected

    def register_job(self, fun: str, arg: list[Any], tgt: str | list[str] = "*",
                     tgt_type: str = "glob", ret: str = "", user: str = "",
                     jid: str | None = None) -> tuple[messages.Publish, list[str]]:
        """Record a job before it goes out, so that no return can arrive unattributed."""
        targeting.validate(tgt, tgt_type)  # TargetError (a ValueError) names the problem
        pub = messages.Publish(fun, list(arg), tgt, tgt_type, jid or gen_jid(), ret, user)
        expected = self.expected_minions(tgt, tgt_type)
        self.tracker.add(pub, frozenset(expected))
        self.jobcache.save_job(Job(jid=pub.jid, fun=fun, arg=list(arg), tgt=tgt, tgt_type=tgt_type,
                                   user=user, minions=expected, started=time.time()))
        return pub, expected

    async def send_job(self, pub: messages.Publish, expected: list[str]) -> None:
        master = self.keys.master_keys()
        algo = str(self.opts.get("signing_algorithm", "PKCS1v15-SHA224"))
        frame = messages.publish_frame(pub, aes=self.shared.crypticle, serial=self.shared.next_serial(),
                                       master_key=master.private_key, sig_algo=algo)
        assert self.pub is not None
        await self.pub.send(frame)
        self.events.fire(f"salt/job/{pub.jid}/new", {
            "jid": pub.jid, "fun": pub.fun, "arg": pub.arg, "tgt": pub.tgt,
            "tgt_type": pub.tgt_type, "minions": expected, "user": pub.user})
        log.info("job.published", jid=pub.jid, fun=pub.fun, tgt=pub.tgt, tgt_type=pub.tgt_type,
                 expected=len(expected))

    # -- key changes and rotation --------------------------------------------------------

    def keys_changed(self) -> None:
        """Re-read the key store; rotate the shared key if any minion lost its acceptance (S5)."""
        now_accepted = set(self.keys.list().get(KeyState.ACCEPTED, []))
        removed = self._accepted - now_accepted
        self._accepted = now_accepted
        for minion_id in set(self.handler.sessions.ids()) - now_accepted:
            self.handler.sessions.drop(minion_id)
        if removed:
            self.rotate(f"keys removed: {sorted(removed)}")

    def rotate(self, reason: str) -> None:
        self.shared.rotate()
        log.info("aes.rotated", reason=reason)
        self.events.fire("salt/key/rotate", {"reason": reason})

    async def _maintain(self) -> None:
        interval = float(self.opts.get("loop_interval", 60))
        session = float(self.opts.get("publish_session", 86400))
        while True:
            await asyncio.sleep(interval)
            self.keys_changed()
            if time.monotonic() - self.shared.created > session:
                self.rotate("publish_session elapsed")
            self.tracker.expire()
            if time.monotonic() - self._last_expiry > 3600:
                self._last_expiry = time.monotonic()
                self.jobcache.expire(float(self.opts.get("keep_jobs", 24)))
                await self.telemetry.expire(float(self.opts["telemetry_retention_days"]) * 86400)

    # -- control socket (CLI, client API) -----------------------------------------------

    async def _serve_control(self) -> None:
        assert self.control is not None
        while True:
            frames = await self.control.recv_multipart()
            if len(frames) < 2:
                continue
            self._spawn(self._control(frames[:-1], frames[-1]))

    async def _control(self, route: list[bytes], body: bytes) -> None:
        async def send(obj: Any) -> None:
            if self.control is not None:
                await self.control.send_multipart([*route, codec.packb(obj)])

        try:
            request = codec.unpackb(body, max_size=16 << 20)
            if not isinstance(request, dict):
                raise DecodeError("control request must be a map")
            await self._control_command(request, send)
        except (DecodeError, ValueError, KeyError, TypeError) as err:
            await send({"error": f"{type(err).__name__}: {err}"})
        except Exception as err:  # keep serving whatever a request does
            log.exception("control.crashed")
            await send({"error": f"internal error: {err}"})

    async def _control_command(self, request: dict[str, Any], send: Any) -> None:
        cmd = request.get("cmd")
        if cmd == "ping":
            await send({"ok": True, "pid": os.getpid()})
        elif cmd == "keys_changed":
            self.keys_changed()
            await send({"ok": True})
        elif cmd == "publish":
            await self._control_publish(request, send)
        elif cmd == "runner":
            await self._control_runner(request, send)
        else:
            await send({"error": f"unknown command {cmd!r}"})

    async def _control_runner(self, request: dict[str, Any], send: Any) -> None:
        fun, arg = request.get("fun"), request.get("arg", [])
        if not isinstance(fun, str) or not isinstance(arg, list):
            raise ValueError("runner needs fun (a string) and arg (a list)")
        try:
            result = await self.runners.call(self, fun, arg)
        except RunnerError as err:
            await send({"error": str(err)})
            return
        await send({"return": result})

    async def _control_publish(self, request: dict[str, Any], send: Any) -> None:
        arg = request.get("arg", [])
        if not isinstance(request.get("fun"), str) or not isinstance(arg, list):
            raise ValueError("publish needs fun (a string) and arg (a list)")
        timeout = float(request.get("timeout", self.opts.get("timeout", 5)))
        pub, expected = self.register_job(request["fun"], arg, request.get("tgt", "*"),
                                          request.get("tgt_type", "glob"), request.get("ret", ""),
                                          str(request.get("user", "")))
        queue = self.tracker.wait(pub.jid) if request.get("stream", False) else None
        try:
            await self.send_job(pub, expected)
            await send({"jid": pub.jid, "minions": expected})
            if queue is not None:
                await self._stream_returns(pub.jid, queue, timeout, send)
        finally:
            if queue is not None:
                self.tracker.unwait(pub.jid, queue)

    async def _stream_returns(self, jid: str, queue: asyncio.Queue[Any], timeout: float,
                              send: Any) -> None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = await asyncio.wait_for(queue.get(), left)
            except TimeoutError:
                break
            if item is None:
                break
            await send({"return": {"id": item.minion_id, "jid": item.jid, "fun": item.fun,
                                   "return": item.ret, "retcode": item.retcode,
                                   "success": item.success, "out": item.out}})
        job = self.tracker.get(jid)
        missing = sorted(job.expected - job.returned) if job else []
        await send({"done": True, "jid": jid, "missing": missing})


def _host(interface: str) -> str:
    return f"[{interface}]" if ":" in interface and not interface.startswith("[") else interface


async def run_master(opts: Mapping[str, Any]) -> None:
    """Run a master until SIGTERM/SIGINT."""
    import signal

    master = Master(opts)
    master.bind()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, master.stop)
    await master.serve()
