"""The scheduler: intervals, splay, cron, maxrunning, returns and returners, pillar jobs.

Time is a ManualClock: minutes pass in milliseconds and no test sleeps for real.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from autopi_agent.minion.clock import ManualClock
from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.dispatch import Dispatcher
from autopi_agent.minion.loader import BUILTIN_MODULES, Loader
from autopi_agent.minion.schedule import MAX_NAP, Scheduler
from autopi_agent.minion.schedule_book import ScheduleBook
from autopi_agent.returners import BUILTIN_RETURNERS, Returners
from autopi_proto.jid import is_jid
from autopi_proto.messages import JobReturn

MODULES = {**BUILTIN_MODULES, "car": "tests.agent.carmods"}
RETURNERS = {**BUILTIN_RETURNERS, "keep": "tests.agent.carmods:list_returner",
             "broken": "tests.agent.carmods:broken_returner"}
START_WALL = dt.datetime(2024, 1, 1, 0, 7, 30, tzinfo=dt.UTC).timestamp()


class Host:
    """The parts of an Agent the scheduler uses, with returns kept in a list."""

    def __init__(self, ctx: AgentContext) -> None:
        self.minion_id = ctx.minion_id
        self.context = ctx
        self.jobs: dict[str, dict[str, Any]] = {}
        self.dispatcher = Dispatcher(ctx)
        self.returners = Returners(ctx, RETURNERS, entry_points=False)
        self.returns: list[JobReturn] = []

    async def send_return(self, ret: JobReturn) -> str:
        self.returns.append(ret)
        return f"item-{len(self.returns)}"


def make_ctx(tmp_path: Path, **opts: Any) -> AgentContext:
    ctx = AgentContext.create({"id": "car-0001", "cachedir": str(tmp_path / "cache"), **opts},
                              loader=Loader(MODULES, entry_points=False))
    ctx.services["calls"] = []
    return ctx


class Rig:
    """A scheduler on a manual clock, with its host and context."""

    def __init__(self, tmp_path: Path, schedule: dict[str, Any] | None = None,
                 pillar: dict[str, Any] | None = None, **opts: Any) -> None:
        self.ctx = make_ctx(tmp_path, schedule=schedule or {}, **opts)
        self.clock = ManualClock(wall=START_WALL)
        self.ctx.services["clock"] = self.clock
        if pillar is not None:
            self.ctx.services["pillar"] = pillar
        self.host = Host(self.ctx)
        self.book = ScheduleBook.from_opts(self.ctx.opts, pillar)
        self.scheduler = Scheduler(self.host, self.book, clock=self.clock, rng=random.Random(7),
                                   pillar=lambda: self.ctx.services.get("pillar"), tz=dt.UTC)
        self.ctx.services["schedule"] = self.scheduler

    @property
    def calls(self) -> list[Any]:
        return self.ctx.services["calls"]  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self.scheduler.stop()
        await self.host.dispatcher.aclose()
        await self.host.returners.aclose()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (real time, bounded) for ``condition``; fail the test if it never holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


def drive(tmp_path: Path, scenario: Callable[[Rig], Awaitable[None]], **rig: Any) -> None:
    async def main() -> None:
        harness = Rig(tmp_path, **rig)
        try:
            await scenario(harness)
        finally:
            await harness.close()

    asyncio.run(main())


def test_interval_job_runs_at_start_then_every_interval(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        rig.scheduler.start()
        await until(lambda: len(rig.host.returns) == 1)
        await rig.clock.advance(59)
        assert len(rig.calls) == 1
        await rig.clock.advance(1)
        await until(lambda: len(rig.host.returns) == 2)
        await rig.clock.advance(120)
        await until(lambda: len(rig.host.returns) == 4)
        assert rig.calls == ["tick"] * 4
        ret = rig.host.returns[0]
        assert (ret.jid, ret.fun, ret.ret, ret.retcode, ret.success) == \
            ("req", "car.record", "tick", 0, True)
        assert ret.fun_args == ["tick"]
        assert ret.minion_id == "car-0001"

    drive(tmp_path, scenario, schedule={"ping": {"function": "car.record", "args": ["tick"],
                                                 "minutes": 1}})


def test_run_on_start_false_waits_one_interval(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        rig.scheduler.start()
        await rig.clock.advance(29)
        assert rig.calls == []
        await rig.clock.advance(1)
        await until(lambda: len(rig.calls) == 1)
        assert rig.calls == [{"x": 1}]

    drive(tmp_path, scenario, schedule={"job": {"function": "car.record", "seconds": 30,
                                                "kwargs": {"value": {"x": 1}},
                                                "run_on_start": False}})


def test_splay_delays_each_run_within_its_window(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        start = rig.clock.monotonic()
        rig.scheduler.start()
        await rig.clock.advance(620)
        await until(lambda: len(rig.calls) == 10)
        offsets = [when - start - 60 * (n + 1) for n, when in enumerate(rig.calls)]
        assert all(0 <= offset <= 20 for offset in offsets), offsets
        assert len({round(offset, 3) for offset in offsets}) > 5  # random, not fixed

    drive(tmp_path, scenario, schedule={"job": {"function": "car.stamp", "seconds": 60,
                                                "splay": 20, "run_on_start": False}})


def test_splay_range_and_global_splay(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        start = rig.clock.monotonic()
        rig.scheduler.start()
        await rig.clock.advance(100 * 11)
        await until(lambda: len(rig.calls) == 10)
        offsets = [when - start - 100 * (n + 1) for n, when in enumerate(rig.calls)]
        assert all(30 <= offset <= 40 for offset in offsets), offsets

    drive(tmp_path, scenario, schedule={"splay": {"start": 30, "end": 40},
                                        "job": {"function": "car.stamp", "seconds": 100,
                                                "run_on_start": False}})


def test_cron_job_follows_the_wall_clock_and_its_jumps(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        rig.scheduler.start()  # wall time is 00:07:30
        await rig.clock.advance(7 * 60 + 29)
        assert rig.calls == []
        await rig.clock.advance(1)  # 00:15
        await until(lambda: len(rig.calls) == 1)
        assert rig.scheduler.next_fire_time("quarter") == pytest.approx(START_WALL + 22.5 * 60)
        rig.clock.jump_wall(-3600)  # NTP says it is 23:15 the day before
        await rig.clock.advance(MAX_NAP)  # the scheduler notices within MAX_NAP
        when = rig.scheduler.next_fire_time("quarter")
        assert when is not None
        assert dt.datetime.fromtimestamp(when, dt.UTC).strftime("%H:%M") == "23:30"
        await rig.clock.advance(15 * 60)
        await until(lambda: len(rig.calls) == 2)

    drive(tmp_path, scenario, schedule={"quarter": {"function": "car.record",
                                                    "cron": "*/15 * * * *"}})


def test_maxrunning_skips_runs_while_earlier_ones_go_on(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        release = rig.ctx.services["slow"] = asyncio.Event()
        rig.scheduler.start()
        await until(lambda: len(rig.calls) == 1)
        assert [job["schedule"] for job in rig.host.jobs.values()] == ["slow"]
        assert all(is_jid(jid) for jid in rig.host.jobs)
        await rig.clock.advance(30)  # three due runs, all skipped
        assert len(rig.calls) == 1
        assert rig.scheduler.running("slow") == 1
        release.set()
        await until(lambda: len(rig.host.returns) == 1)
        assert rig.host.jobs == {}
        release.clear()
        await rig.clock.advance(10)
        await until(lambda: len(rig.calls) == 2)

    drive(tmp_path, scenario, schedule={"slow": {"function": "car.hold", "args": ["slow"],
                                                 "seconds": 10}})


def test_maxrunning_two_lets_two_overlap(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        release = rig.ctx.services["slow"] = asyncio.Event()
        rig.scheduler.start()
        await rig.clock.advance(30)
        await until(lambda: rig.scheduler.running("slow") == 2)
        assert len(rig.calls) == 2
        assert rig.host.jobs == {}  # jid_include false: not listed as running
        release.set()
        await until(lambda: len(rig.host.returns) == 2)

    drive(tmp_path, scenario, schedule={"slow": {"function": "car.hold", "args": ["slow"],
                                                 "seconds": 10, "maxrunning": 2,
                                                 "jid_include": False}})


def test_disabled_jobs_do_not_run_unless_forced(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        rig.scheduler.start()
        await rig.clock.advance(50)
        assert rig.calls == ["b"] * 6  # "a" is disabled
        rig.book.set_enabled(False)
        await rig.clock.advance(50)
        assert rig.calls == ["b"] * 6
        rig.scheduler.run_now("a", force=True)
        await until(lambda: rig.calls[-1] == "a")

    drive(tmp_path, scenario, schedule={
        "a": {"function": "car.record", "args": ["a"], "seconds": 10, "enabled": False},
        "b": {"function": "car.record", "args": ["b"], "seconds": 10}})


def test_returns_go_to_named_returners_and_a_failing_one_is_contained(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        rig.scheduler.start()
        await until(lambda: len(rig.ctx.services.get("returned", [])) == 2)
        by_fun = {ret.fun: ret for ret in rig.ctx.services["returned"]}
        assert set(by_fun) == {"car.record", "car.fail"}
        assert is_jid(by_fun["car.record"].jid)  # returners get the run's own jid
        assert by_fun["car.fail"].retcode == 47 and not by_fun["car.fail"].success
        # return_job false: only the returners; the master gets the other one, as "req"
        assert [(ret.fun, ret.jid) for ret in rig.host.returns] == [("car.fail", "req")]

    drive(tmp_path, scenario, schedule={
        "quiet": {"function": "car.record", "seconds": 60, "return_job": False,
                  "returner": "broken, keep"},
        "loud": {"function": "car.fail", "seconds": 60, "returner": ["keep", "master"]}})


def test_pillar_jobs_run_and_config_wins_on_a_name_clash(tmp_path: Path) -> None:
    pillar = {"schedule": {"both": {"function": "car.record", "args": ["pillar"], "seconds": 10},
                           "only_pillar": {"function": "car.record", "args": ["p"],
                                           "seconds": 10},
                           "broken": {"function": "car.record"}}}

    async def scenario(rig: Rig) -> None:
        rig.scheduler.start()
        await until(lambda: len(rig.calls) == 2)
        assert sorted(rig.calls) == ["config", "p"]
        assert rig.book.where("both") == "config"
        assert rig.book.where("only_pillar") == "pillar"
        assert rig.book.errors == ["pillar: schedule job 'broken': no timing given: add "
                                   "'seconds', 'minutes', 'hours', 'days' or 'cron'"]
        # A new pillar (as a refresh leaves it) drops only_pillar and adds another job.
        rig.ctx.services["pillar"] = {"schedule": {"later": {"function": "car.record",
                                                             "args": ["later"], "seconds": 10}}}
        rig.scheduler.notify()
        await until(lambda: "later" in rig.calls)
        assert rig.book.where("only_pillar") is None
        assert rig.book.errors == []

    drive(tmp_path, scenario, pillar=pillar,
          schedule={"both": {"function": "car.record", "args": ["config"], "hours": 1}})


def test_pillar_change_is_noticed_without_notify(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        rig.scheduler.start()
        await rig.clock.advance(1)
        assert rig.calls == []
        rig.ctx.services["pillar"] = {"schedule": {"p": {"function": "car.record", "args": ["p"],
                                                         "minutes": 5}}}
        await rig.clock.advance(MAX_NAP)
        await until(lambda: rig.calls == ["p"])

    drive(tmp_path, scenario, pillar={})


def test_stop_abandons_runs_in_progress(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        rig.ctx.services["slow"] = asyncio.Event()
        rig.scheduler.start()
        await until(lambda: rig.scheduler.running("slow") == 1)
        await rig.scheduler.stop()
        assert rig.scheduler.running("slow") == 0
        assert rig.host.jobs == {}
        assert rig.host.dispatcher.running() == []

    drive(tmp_path, scenario, schedule={"slow": {"function": "car.hold", "args": ["slow"],
                                                 "seconds": 10}})
