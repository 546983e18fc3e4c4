"""The agent daemon: authenticate, listen for publishes, run matching jobs, send returns."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog
import zmq
import zmq.asyncio

from autopi_agent import sdnotify
from autopi_agent.gpio import GpioOwner, GpioSettings
from autopi_agent.grains import core as grains_core
from autopi_agent.keys import MasterKeyCache, MinionKeys
from autopi_agent.minion import presence
from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.dispatch import Dispatcher, JobResult
from autopi_agent.minion.localcall import CallServer, serve_local_calls, socket_path
from autopi_agent.minion.loggers import LoggerSet, SpoolSink, VehicleGate
from autopi_agent.minion.mine import MineUpdater
from autopi_agent.minion.schedule import Scheduler
from autopi_agent.minion.schedule_book import ScheduleBook
from autopi_agent.minion.sender import Sender
from autopi_agent.minion.vehicle_events import VehicleEvents
from autopi_agent.obd.settings import ObdSettings
from autopi_agent.portlock import lock_dir
from autopi_agent.returners import Returners, extra_names
from autopi_agent.selfconfig import SelfConfig, guard_trial
from autopi_agent.spool import Spool
from autopi_agent.state.managed_loggers import ManagedLoggers
from autopi_agent.state.sources import cached_pillar
from autopi_agent.transport import (
    MasterLink,
    MasterRejected,
    RequestTimeout,
    Subscription,
    TransportError,
)
from autopi_proto import messages, targeting
from autopi_proto.errors import AuthenticationError, DecodeError, ReplayError

log = structlog.get_logger(__name__)

class Agent:
    """One agent (many can run in one process: nothing here is module-level)."""

    def __init__(self, opts: Mapping[str, Any], *, ctx: zmq.asyncio.Context | None = None,
                 grains: dict[str, Any] | None = None) -> None:
        self.opts = opts
        self.minion_id = str(opts["id"])
        self.zmq = ctx or zmq.asyncio.Context.instance()
        self.keys = MinionKeys.load_or_create(opts["pki_dir"], int(opts.get("keysize", 2048)))
        self.master_keys = MasterKeyCache(opts["pki_dir"], str(opts.get("master_finger", "")))
        if grains is None:
            grains = grains_core.collect(self.minion_id, extra=opts.get("grains") or {})
        self.context = AgentContext.create(opts, grains=grains)
        # Early: the power manager and the beacons emit through it (spooled once running).
        self.events = VehicleEvents(self.minion_id, self.fire_event, opts.get("vehicle_events"))
        self.context.services["vehicle_events"] = self.events
        self.jobs: dict[str, dict[str, Any]] = {}
        self.context.services["jobs"] = self.jobs
        self.dispatcher = Dispatcher(self.context)
        self.link = MasterLink(opts, self.keys, self.master_keys, self.zmq)
        self.spool = Spool(Path(opts["cachedir"]) / "spool.sqlite",
                           max_bytes=int(opts.get("spool_max_bytes", 64 << 20)),
                           max_age_s=float(opts.get("spool_max_age", 7 * 86400)),
                           max_age_returns_s=float(opts.get("spool_max_age_returns", 30 * 86400)))
        self.sender = Sender(self.spool, self.link, opts, events_ready=self._listening)
        self.context.services["spool"] = self.spool
        self.context.services["master"] = self.link
        self.context.services["master_call"] = self.master_call
        self._loop: asyncio.AbstractEventLoop | None = None
        obd_settings = ObdSettings.from_opts(opts.get("obd"))
        self.obd: Any = None
        self.obd_beacon: Any = None
        if obd_settings.enabled:
            # python-OBD (with pint and numpy) costs ~200 ms and ~20 MiB: only with an adapter.
            from autopi_agent.beacons.obd import ObdBeacon
            from autopi_agent.obd.owner import ObdOwner

            self.obd_beacon = ObdBeacon(self.events, port=obd_settings.port,
                                        cachedir=Path(opts["cachedir"]),
                                        dtc_interval=self.events.settings.dtc_interval)
            self.obd = ObdOwner(obd_settings, on_connect=self._car_grains,
                                on_disconnect=self.obd_beacon.disconnected,
                                lock_dir=lock_dir(opts["cachedir"]))
            self.context.services["obd"] = self.obd
            self.context.services["obd_beacon"] = self.obd_beacon
        gpio_settings = GpioSettings.from_opts(opts.get("gpio"))
        self.gpio = GpioOwner(gpio_settings) if gpio_settings.pins else None
        if self.gpio is not None:
            self.context.services["gpio"] = self.gpio
        self.mine = MineUpdater(self.dispatcher.run, float(opts.get("mine_interval", 60)))
        self.returners = Returners(self.context)
        self.context.services["send_return"] = self.send_return
        cached = cached_pillar(self.context)

        def pillar() -> Mapping[str, Any] | None:
            current = self.context.services.get("pillar")
            return current if current is not None else cached  # offline boot: the last pillar

        self.scheduler = Scheduler(self, ScheduleBook.from_opts(opts, cached), pillar=pillar)
        self.context.services["schedule"] = self.scheduler
        self.gate = VehicleGate()
        self.context.services["vehicle_gate"] = self.gate
        managed = ManagedLoggers(opts["cachedir"])  # obd.logger states' loggers
        self.context.services["managed_loggers"] = managed
        self.loggers = LoggerSet(self.dispatcher, SpoolSink(self.spool, self.sender.nudge),
                                 opts.get("loggers"), gate=self.gate, pillar=pillar,
                                 managed=managed.load)
        self.context.services["loggers"] = self.loggers
        self.power: Any = None
        if (opts.get("power") or {}).get("enabled"):
            # Only a dongle with power management pays for its imports (pyserial, subprocess).
            from autopi_agent.power.manager import PowerManager

            self.power = PowerManager.for_agent(
                opts, self.context.services, self.loggers.stop,
                lambda budget: self._flush(budget, ("return", "event", "telemetry")))
            self.context.services["power"] = self.power
        # agent.config: restart after the job's return; a config on trial is confirmed or undone.
        self.restart_reason: str | None = None
        self.context.services["restart"] = self.request_restart
        self.selfconfig = SelfConfig.from_opts(opts)
        self.sub: Subscription | None = None
        self._call_server: CallServer | None = None
        self.ready = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self._reauth_lock = asyncio.Lock()
        self._sending: asyncio.Task[Any] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def _listening(self) -> bool:
        """Whether our subscription to the master's publisher is up (see Sender)."""
        return self.sub is not None and self.sub.connected_at is not None

    def _car_grains(self, grains: Mapping[str, Any]) -> None:
        """The car answered (VIN, protocol, PIDs): merge its grains on the agent's loop."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self.context.grains.update, dict(grains))
        if self.obd_beacon is not None:
            self.obd_beacon.connected(grains)

    def master_call(self, load: dict[str, Any], private: str | None = None,
                    timeout: float = 60.0) -> Any:
        """Send a request to the master from a job's worker thread and wait for the reply.

        ``private`` names the reply's encrypted entry (``"pillar"``) for data meant for this
        minion alone. Never call it from the agent's event loop thread.
        """
        loop = self._loop
        if loop is None:
            raise RuntimeError("the agent is not running")
        if private:
            coro = self.link.request_private(load, private, timeout)
        else:
            coro = self.link.request(load, timeout)
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout + 5)

    async def run(self) -> None:
        """Authenticate, then serve publishes until ``stop()``.

        Under systemd (Type=notify) READY=1 goes out as soon as the loop runs: a car that
        is offline, or whose key is still pending, must not hold up the boot. WATCHDOG=1
        is sent from this loop, so a stalled loop gets the agent restarted.
        """
        self._loop = asyncio.get_running_loop()
        self.events.attach(self._loop)
        try:
            sdnotify.notify(f"READY=1\nSTATUS=authenticating with {self.link.address}")
            interval = sdnotify.watchdog_interval()
            if interval is not None:
                self._spawn(sdnotify.keep_alive(interval))
            if self.obd is not None:
                self.obd.start(connect=True)
                self._spawn(self.obd_beacon.run(self.obd))
            # Scheduled jobs and loggers run offline too: their output waits in the spool.
            self.scheduler.start()
            self.loggers.start()
            if self.power is not None:
                self._spawn(self.power.run())
            await self._listen_for_local_calls()
            if self.selfconfig is not None:
                self._spawn(guard_trial(self.selfconfig, self.ready, float(
                    self.opts.get("config_trial_window", 120)), self.request_restart))
            if not await self._unless_stopped(self._authenticate()):
                return
            self.sub = Subscription(self.opts, self.zmq, self.link.publish_port)
            self._spawn(presence.watch_link(self))
            self._sending = self._spawn(self.sender.run())
            self._spawn(presence.announce(self))
            # Ready means a job published now reaches us: ZeroMQ drops what the master
            # publishes before the subscription's handshake is done.
            if not await self._unless_stopped(presence.subscribed(self)):
                return
            self.ready.set()
            self.mine.start()
            sdnotify.notify(f"STATUS=connected to {self.link.address}")
            log.info("agent.ready", minion=self.minion_id, master=self.link.address)
            await self._serve()
        finally:
            sdnotify.notify("STOPPING=1")
            await self._shutdown()

    def stop(self) -> None:
        self._stopping.set()

    def request_restart(self, reason: str) -> None:
        """Stop once no job runs (their returns spooled, then flushed), for ``autopi-agent
        serve`` to start again (``restart_reason`` set); callable from any thread."""
        self.restart_reason = reason
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._restart_when_idle)

    def _restart_when_idle(self) -> None:
        if self.restart_reason is not None and not self.jobs:
            log.warning("agent.restarting", reason=self.restart_reason)
            self.stop()

    async def _unless_stopped(self, coro: Any) -> bool:
        """Run ``coro`` unless ``stop()`` comes first (then cancel it and answer False)."""
        work = asyncio.create_task(coro)
        stopping = asyncio.create_task(self._stopping.wait())
        done, _ = await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in (work, stopping):
            if task not in done:
                task.cancel()
        await asyncio.gather(work, stopping, return_exceptions=True)
        if work in done:
            work.result()
            return True
        return False

    async def _serve(self) -> None:
        assert self.sub is not None
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                recv = asyncio.create_task(self.sub.recv())
                done, _ = await asyncio.wait({recv, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if recv not in done:
                    recv.cancel()
                    break
                await self._on_publish(recv.result())
        finally:
            stopping.cancel()

    async def _listen_for_local_calls(self) -> None:
        if self.opts.get("local_calls", True):
            self._call_server = await serve_local_calls(
                socket_path(self.opts), self._local_call, self.context.loader.outputter)

    async def _local_call(self, fun: str, arg: Sequence[Any], timeout: float | None) -> JobResult:
        return await self.dispatcher.run(fun, arg, timeout=timeout)

    async def _shutdown(self) -> None:
        if self._call_server is not None:
            await self._call_server.close()
        await self.loggers.stop()
        await self.scheduler.stop()
        await self.events.drain()
        await self._flush()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.mine.stop()
        await self.dispatcher.aclose(grace=1.0)
        if self.power is not None:
            await asyncio.to_thread(self.power.close)
        if self.gpio is not None:
            self.gpio.close()
        await self.returners.aclose()
        if self.obd is not None:
            await asyncio.to_thread(self.obd.close)
        if self.sub is not None:
            self.sub.close()
        self.link.close()
        self.spool.close()
        log.info("agent.stopped", minion=self.minion_id)

    async def _flush(self, budget: float | None = None,
                     kinds: tuple[str, ...] = ("return", "event")) -> bool:
        """Give the sender a bounded time to deliver what is spooled before we exit (or
        sleep: the power manager passes its own budget and all kinds); True when done."""
        if budget is None:
            budget = float(self.opts.get("shutdown_flush_timeout", 5))
        if self._sending is None or self._sending.done() or budget <= 0:
            return False
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline:
            if not await asyncio.to_thread(self.spool.peek, 1, 1 << 20, kinds):  # type: ignore[arg-type]
                return True
            self.sender.nudge()
            await asyncio.sleep(0.05)
        log.warning("agent.flush_incomplete", left=self.spool.stats().total_count)
        return False

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _authenticate(self) -> None:
        wait = float(self.opts.get("acceptance_wait_time", 10))
        while True:
            try:
                await self.link.authenticate()
                return
            except MasterRejected as err:
                # Never trust a master whose key does not verify; keep trying (it may be
                # a network-level impostor that goes away), slowly.
                log.error("auth.master_rejected", error=str(err))
                await asyncio.sleep(max(wait, 30.0))

    async def reauthenticate(self, reason: str) -> None:
        """Re-run ``_auth`` (once at a time); called when the shared key stops working."""
        async with self._reauth_lock:
            log.info("auth.renew", reason=reason)
            with contextlib.suppress(TransportError):
                await self.link.authenticate(forever=False)

    # -- publishes -----------------------------------------------------------------------

    async def _on_publish(self, frame: bytes) -> None:
        pub = await self._open(frame)
        if pub is None:
            return
        try:
            selected = targeting.matches(pub.tgt, pub.tgt_type, self.minion_id, self.context.grains)
        except Exception as err:  # a strange target must not stop the agent
            log.warning("publish.bad_target", jid=pub.jid, error=str(err))
            return
        if not selected:
            return
        log.info("publish.received", jid=pub.jid, fun=pub.fun)
        self._spawn(self._run_job(pub))

    async def _open(self, frame: bytes) -> messages.Publish | None:
        max_size = int(self.opts.get("max_publish_size", 16 << 20))
        for attempt in (1, 2):
            aes, master_pub = self.link.aes, self.link.master_pub
            if aes is None or master_pub is None:
                return None
            try:
                return messages.open_publish(frame, aes=aes, master_pub=master_pub, max_size=max_size)
            except messages.ForgedPublish as err:
                log.error("publish.forged", error=str(err))  # S3: refused, logged, no re-auth
                return None
            except ReplayError as err:
                log.error("publish.replayed", error=str(err))
                return None
            except DecodeError as err:
                log.warning("publish.malformed", error=str(err))
                return None
            except AuthenticationError as err:
                if attempt == 2:
                    log.error("publish.undecryptable", error=str(err))
                    return None
                # Signed by our master but not readable: the shared key rotated.
                await self.reauthenticate("shared key rotated")
        return None

    async def _run_job(self, pub: messages.Publish) -> None:
        self.jobs[pub.jid] = {"jid": pub.jid, "fun": pub.fun, "arg": pub.arg, "tgt": pub.tgt,
                              "tgt_type": pub.tgt_type, "user": pub.user, "pid": 0,
                              "started": time.time()}
        try:
            result = await self.dispatcher.run(pub.fun, pub.arg)
        finally:
            self.jobs.pop(pub.jid, None)
        ret = messages.JobReturn(self.minion_id, pub.jid, pub.fun, result.ret, result.retcode,
                                 result.success, list(pub.arg),
                                 self.context.loader.outputter(pub.fun))
        await self.send_return(ret)
        if names := extra_names(pub.ret):
            await self.returners.deliver(ret, names)
        self._restart_when_idle()

    async def send_return(self, ret: messages.JobReturn) -> str:
        """Spool a return (durably) and wake the sender; it leaves the spool on the master's ack."""
        if ret.jid == "req" and not ret.uid:
            # Our own job: a stable id lets the master store a resend only once.
            ret = dataclasses.replace(ret, uid=uuid.uuid4().hex)
        item_id = await asyncio.to_thread(self.spool.put, "return", ret.load())
        self.sender.nudge()
        log.info("job.spooled", jid=ret.jid, fun=ret.fun, retcode=ret.retcode, item=item_id)
        return item_id

    async def fire_event(self, tag: str, data: dict[str, Any]) -> str:
        """Spool an event for the master's bus (delivered even after hours offline)."""
        item_id = await asyncio.to_thread(self.spool.put, "event", {"tag": tag, "data": data})
        self.sender.nudge()
        return item_id


__all__ = ["Agent", "RequestTimeout"]
