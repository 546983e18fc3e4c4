"""The scheduler: runs the jobs of the agent's schedule on their intervals and cron times.

One asyncio task sleeps until the next job is due; each run is a task of its own, so a
slow job never delays another. Timing follows Salt's minion:

- An interval job runs ``run_on_start`` (default true) when the scheduler starts or the job
  is added, then every interval after that; missed runs (the Pi was suspended, a run took
  longer) are not caught up. Intervals use the monotonic clock, so setting the wall clock
  (NTP, GPS; a Pi has no RTC) neither skips nor doubles runs.
- A cron job runs at its wall-clock times; the plan is redone when the wall clock jumps.
- ``splay`` delays each run by a random amount (a fleet that boots together does not
  query the master together); ``run_on_start`` runs are not delayed, as in Salt.
- A due run is skipped when ``maxrunning`` runs of the job are still going, when the job
  is disabled, or when the whole schedule is.

A run's return goes to the master with jid ``req`` (the master gives it a jid) when
``return_job`` is true, and to the job's ``returner`` names with a local jid. Changes of
the schedule (``schedule.*`` functions, a pillar refresh) take effect at ``notify()``; the
pillar is also checked for changes every ``MAX_NAP`` seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog

from autopi_agent.minion.clock import Clock, SystemClock
from autopi_agent.minion.dispatch import Dispatcher
from autopi_agent.minion.schedule_book import ScheduleBook
from autopi_agent.minion.schedule_spec import JobSpec, ScheduleError
from autopi_agent.returners import Returners, extra_names
from autopi_proto.jid import gen_jid
from autopi_proto.messages import JobReturn

__all__ = ["MAX_NAP", "JobHost", "Scheduler"]

log = structlog.get_logger(__name__)

MAX_NAP = 30.0  # seconds between checks of the wall clock and the pillar
_WALL_JUMP = 2.0  # seconds of wall-clock change that mean the clock was set


class JobHost(Protocol):
    """What the scheduler needs of the agent (``Agent`` has all of it)."""

    @property
    def minion_id(self) -> str: ...

    @property
    def jobs(self) -> dict[str, dict[str, Any]]: ...

    @property
    def dispatcher(self) -> Dispatcher: ...

    @property
    def returners(self) -> Returners: ...

    async def send_return(self, ret: JobReturn) -> str: ...


@dataclasses.dataclass(slots=True)
class _Timer:
    """The run-time state of one job."""

    spec: JobSpec
    due: float = 0.0  # monotonic time of the next run
    nominal: float = 0.0  # the next interval boundary, before splay
    running: int = 0


class Scheduler:
    """Runs one agent's scheduled jobs; ``start()`` and ``await stop()`` are the daemon's."""

    def __init__(self, host: JobHost, book: ScheduleBook, *, clock: Clock | None = None,
                 rng: random.Random | None = None,
                 pillar: Callable[[], Mapping[str, Any] | None] | None = None,
                 tz: dt.tzinfo | None = None) -> None:
        self.host = host
        self.tz = tz  # of cron times; None is the host's local zone
        self.book = book
        self.clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._pillar = pillar
        self._pillar_seen: Mapping[str, Any] | None = pillar() if pillar else None
        self._timers: dict[str, _Timer] = {}
        self._runs: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._offset = 0.0

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the timer task on the running loop."""
        if self._task is None:
            self._offset = self.clock.time() - self.clock.monotonic()
            self._sync()
            self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def stop(self) -> None:
        """Stop the timer and abandon the runs in progress (their jobs are cancelled)."""
        tasks = [task for task in (self._task, *self._runs) if task is not None]
        self._task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def notify(self) -> None:
        """The schedule or the pillar changed: re-read it and re-plan."""
        self._wake.set()

    # -- questions and orders from schedule.* ------------------------------------------

    def next_fire_time(self, name: str) -> float | None:
        """Wall time of job ``name``'s next run, or None (no such job, or not started)."""
        timer = self._timers.get(name)
        if timer is None:
            return None
        return timer.due + self.clock.time() - self.clock.monotonic()

    def running(self, name: str) -> int:
        """How many runs of job ``name`` are going now."""
        timer = self._timers.get(name)
        return timer.running if timer else 0

    def run_now(self, name: str, *, force: bool = False) -> None:
        """Run job ``name`` now (``force`` runs a disabled job); ScheduleError if it cannot."""
        self._sync()
        timer = self._timers.get(name)
        if timer is None:
            raise ScheduleError(f"Job {name} does not exist.")
        if not timer.spec.enabled and not force:
            raise ScheduleError(f"Job {name} is disabled.")
        if timer.running >= timer.spec.maxrunning:
            raise ScheduleError(f"Job {name} is already running {timer.running} time(s) "
                                f"(maxrunning {timer.spec.maxrunning}).")
        self._fire(timer)

    # -- the timer loop ----------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            self._check_pillar()
            self._check_wall()
            now = self.clock.monotonic()
            for timer in list(self._timers.values()):
                if timer.due <= now:
                    self._on_due(timer, now)
            await self._nap(self._delay(now))
            if self._wake.is_set():
                self._sync()

    def _delay(self, now: float) -> float:
        soonest = min((timer.due for timer in self._timers.values()), default=now + MAX_NAP)
        return min(MAX_NAP, max(0.0, soonest - now))

    async def _nap(self, seconds: float) -> None:
        if self._wake.is_set():
            return
        sleep = asyncio.ensure_future(self.clock.sleep(seconds))
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleep, wake}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            wake.cancel()

    def _check_pillar(self) -> None:
        if self._pillar is None:
            return
        pillar = self._pillar()
        if pillar is not self._pillar_seen:
            self._pillar_seen = pillar
            self.book.set_pillar(pillar)
            self._sync()

    def _check_wall(self) -> None:
        offset = self.clock.time() - self.clock.monotonic()
        if abs(offset - self._offset) <= _WALL_JUMP:
            return
        log.info("schedule.wall_clock_set", jump=round(offset - self._offset, 1))
        self._offset = offset
        now = self.clock.monotonic()
        for timer in self._timers.values():
            if timer.spec.cron is not None:
                self._plan_cron(timer, now)

    def _sync(self) -> None:
        """Make the timers match the book: keep those whose timing did not change."""
        now = self.clock.monotonic()
        jobs = self.book.jobs()
        for name in set(self._timers) - set(jobs):
            del self._timers[name]
        for name, spec in jobs.items():
            timer = self._timers.get(name)
            if timer is None:
                timer = self._timers[name] = _Timer(spec)
            elif timer.spec.same_timing(spec):
                timer.spec = spec
                continue
            # The same timer object stays, so runs in progress still count for maxrunning.
            timer.spec = spec
            self._plan_first(timer, now)

    def _plan_first(self, timer: _Timer, now: float) -> None:
        spec = timer.spec
        if spec.run_on_start:
            timer.nominal = timer.due = now
        elif spec.interval is not None:
            timer.nominal = now + spec.interval
            timer.due = timer.nominal + self._splay(spec)
        else:
            self._plan_cron(timer, now)

    def _plan_next(self, timer: _Timer, now: float) -> None:
        spec = timer.spec
        if spec.interval is None:
            self._plan_cron(timer, now)
            return
        timer.nominal += spec.interval
        if timer.nominal <= now:  # late by a whole interval: skip, do not catch up
            timer.nominal = now + spec.interval
        timer.due = timer.nominal + self._splay(spec)

    def _plan_cron(self, timer: _Timer, now: float) -> None:
        assert timer.spec.cron is not None
        wall = self.clock.time()
        timer.nominal = now + timer.spec.cron.next_time(wall, self.tz) - wall
        timer.due = timer.nominal + self._splay(timer.spec)

    def _splay(self, spec: JobSpec) -> float:
        if spec.splay is None:
            return 0.0
        return self._rng.uniform(spec.splay.start, spec.splay.end)

    def _on_due(self, timer: _Timer, now: float) -> None:
        spec = timer.spec
        self._plan_next(timer, now)
        if not (self.book.enabled and spec.enabled):
            log.debug("schedule.skipped", job=spec.name, reason="disabled")
        elif timer.running >= spec.maxrunning:
            log.warning("schedule.skipped", job=spec.name, reason="maxrunning",
                        running=timer.running, maxrunning=spec.maxrunning)
        else:
            self._fire(timer)

    # -- one run -----------------------------------------------------------------------

    def _fire(self, timer: _Timer) -> None:
        timer.running += 1
        task = asyncio.create_task(self._run(timer), name=f"schedule:{timer.spec.name}")
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)

    async def _run(self, timer: _Timer) -> None:
        spec = timer.spec
        jid = gen_jid()
        wire = spec.wire_args()
        log.info("schedule.run", job=spec.name, fun=spec.function, jid=jid)
        if spec.jid_include:
            self.host.jobs[jid] = {"jid": jid, "fun": spec.function, "arg": wire,
                                   "schedule": spec.name, "tgt": self.host.minion_id,
                                   "tgt_type": "glob", "user": "schedule", "pid": 0,
                                   "started": time.time()}
        try:
            result = await self.host.dispatcher.run(spec.function, wire)
        finally:
            self.host.jobs.pop(jid, None)
            timer.running -= 1
        ret = JobReturn(self.host.minion_id, jid, spec.function, result.ret, result.retcode,
                        result.success, wire)
        await self._deliver(spec, ret)

    async def _deliver(self, spec: JobSpec, ret: JobReturn) -> None:
        if spec.return_job:
            try:
                await self.host.send_return(dataclasses.replace(ret, jid="req"))
            except Exception as err:  # a full disk must not kill the scheduler
                log.error("schedule.return_failed", job=spec.name, error=f"{type(err).__name__}: {err}")
        names = extra_names(spec.returners)
        if names:
            await self.host.returners.deliver(ret, names)
