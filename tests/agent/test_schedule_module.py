"""The schedule execution module: run-time changes, their persistence across a restart,
pillar jobs, and use without a running agent."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import stat
from pathlib import Path
from typing import Any

import yaml

from autopi_agent.minion.dispatch import Dispatcher, JobResult
from autopi_agent.minion.loader import BUILTIN_MODULES, Loader
from autopi_agent.minion.schedule_book import SAVED_FILE
from tests.agent.test_schedule import MODULES, Rig, make_ctx, until

SCHEDULE_MODULES = {**MODULES, "schedule": "autopi_agent.modules.schedule"}
CONFIG = {"config_job": {"function": "car.record", "args": ["config"], "hours": 1}}


class ModuleRig(Rig):
    def __init__(self, tmp_path: Path, **kwargs: Any) -> None:
        super().__init__(tmp_path, **kwargs)
        self.ctx.loader = Loader(SCHEDULE_MODULES, entry_points=False)

    async def call(self, fun: str, *arg: Any) -> JobResult:
        return await self.host.dispatcher.run(fun, list(arg))


def run(tmp_path: Path, scenario: Any, **kwargs: Any) -> None:
    async def main() -> None:
        rig = ModuleRig(tmp_path, **kwargs)
        rig.scheduler.start()
        try:
            await scenario(rig)
        finally:
            await rig.close()

    asyncio.run(main())


def test_add_runs_lists_and_survives_a_restart(tmp_path: Path) -> None:
    async def first(rig: ModuleRig) -> None:
        added = await rig.call("schedule.add", "ping", "function=car.record", "job_args=[hi]",
                               "minutes=5", "returner=keep")
        assert added.ret == {"result": True, "comment": "Added job: ping to schedule.",
                             "changes": {"ping": "added"}}
        await until(lambda: "hi" in rig.calls)  # run_on_start
        await until(lambda: len(rig.ctx.services.get("returned", [])) == 1)
        listed = await rig.call("schedule.list", "return_yaml=False")
        assert listed.ret["ping"] == {"function": "car.record", "args": ["hi"], "minutes": 5,
                                      "returner": "keep", "enabled": True}
        again = await rig.call("schedule.add", "ping", "function=test.ping", "minutes=1")
        assert again.ret["result"] is False and again.retcode == 1
        assert again.ret["comment"] == "Job ping already exists in schedule."

    async def after_restart(rig: ModuleRig) -> None:
        text = (await rig.call("schedule.list")).ret
        jobs = yaml.safe_load(text)["schedule"]
        assert jobs["ping"]["saved"] is True
        assert jobs["config_job"]["saved"] is False
        await until(lambda: "hi" in rig.calls)

    run(tmp_path, first, schedule=CONFIG)
    saved = tmp_path / "cache" / SAVED_FILE
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text())["jobs"]["ping"]["function"] == "car.record"
    run(tmp_path, after_restart, schedule=CONFIG)


def test_delete_modify_and_toggles_persist(tmp_path: Path) -> None:
    async def first(rig: ModuleRig) -> None:
        deleted = await rig.call("schedule.delete", "config_job")
        assert deleted.ret["changes"] == {"config_job": "removed"}
        assert (await rig.call("schedule.delete", "config_job")).ret["comment"] == \
            "Job config_job does not exist."
        await rig.call("schedule.add", "b", "function=car.record", "seconds=30", "splay=3")
        changed = await rig.call("schedule.modify", "b", "cron=0 * * * *")
        assert changed.ret["changes"]["b"] == {
            "old": {"function": "car.record", "seconds": 30, "splay": 3},
            "new": {"function": "car.record", "cron": "0 * * * *", "splay": 3}}
        same = await rig.call("schedule.modify", "b", "splay=3")
        assert same.ret["comment"] == "Job b in correct state"
        bad = await rig.call("schedule.modify", "b", "cron=every hour")
        assert bad.ret["result"] is False and "key 'cron'" in bad.ret["comment"]
        assert (await rig.call("schedule.disable_job", "b")).ret["changes"] == {"b": "disabled"}
        assert (await rig.call("schedule.disable")).ret["comment"] == "Disabled schedule on minion."

    async def after_restart(rig: ModuleRig) -> None:
        jobs = (await rig.call("schedule.list", "return_yaml=False")).ret
        assert jobs == {"enabled": False,
                        "b": {"function": "car.record", "cron": "0 * * * *", "splay": 3,
                              "enabled": False}}
        assert (await rig.call("schedule.list", "show_disabled=False", "return_yaml=False")).ret \
            == {"enabled": False}
        await rig.call("schedule.enable")
        await rig.call("schedule.enable_job", "b")
        readded = await rig.call("schedule.add", "config_job", "function=car.record",
                                 "job_args=[back]", "hours=2")
        assert readded.ret["result"] is True

    run(tmp_path, first, schedule=CONFIG)
    run(tmp_path, after_restart, schedule=CONFIG)
    book_file = json.loads((tmp_path / "cache" / SAVED_FILE).read_text())
    assert book_file["enabled"] is True and book_file["deleted"] == []
    assert book_file["jobs"]["config_job"]["hours"] == 2


def test_run_job_and_next_fire_time(tmp_path: Path) -> None:
    async def scenario(rig: ModuleRig) -> None:
        started = await rig.call("schedule.run_job", "nightly")
        assert started.ret["comment"] == "Scheduling Job nightly on minion."
        await until(lambda: len(rig.host.returns) == 1)
        assert rig.calls == ["nightly"]
        assert rig.host.returns[-1].jid == "req"
        off = await rig.call("schedule.run_job", "off")
        assert off.ret == {"result": False, "comment": "Job off is disabled.", "changes": {}}
        await rig.call("schedule.run_job", "off", "force=True")
        await until(lambda: rig.calls[-1] == "off")
        missing = await rig.call("schedule.run_job", "nope")
        assert missing.ret["comment"] == "Job nope does not exist."
        nxt = await rig.call("schedule.show_next_fire_time", "nightly")
        when = rig.scheduler.next_fire_time("nightly")
        assert when is not None
        assert dt.datetime.fromtimestamp(when, dt.UTC).strftime("%d %H:%M") == "01 03:00"
        assert nxt.ret == {"result": True,  # shown in the host's zone
                           "next_fire_time": dt.datetime.fromtimestamp(when).strftime(
                               "%Y-%m-%dT%H:%M:%S")}
        unknown = await rig.call("schedule.show_next_fire_time", "nope")
        assert unknown.ret == {"result": True, "comment": "next fire time not available."}

    run(tmp_path, scenario, schedule={
        "nightly": {"function": "car.record", "args": ["nightly"], "cron": "0 3 * * *"},
        "off": {"function": "car.record", "args": ["off"], "days": 1, "enabled": False}})


def test_pillar_jobs_are_changed_in_the_pillar(tmp_path: Path) -> None:
    pillar = {"schedule": {"from_pillar": {"function": "car.record", "args": ["p"], "hours": 1}}}

    async def scenario(rig: ModuleRig) -> None:
        await until(lambda: rig.calls == ["p"])
        for fun in ("schedule.delete", "schedule.modify", "schedule.disable_job"):
            refused = await rig.call(fun, "from_pillar")
            assert refused.ret["result"] is False
            assert "comes from the pillar" in refused.ret["comment"]
        assert list((await rig.call("schedule.list", "where=pillar", "return_yaml=False")).ret) \
            == ["from_pillar"]
        assert (await rig.call("schedule.list", "where=opts", "return_yaml=False")).ret == {}
        run_now = await rig.call("schedule.run_job", "from_pillar")
        assert run_now.ret["result"] is True

    run(tmp_path, scenario, pillar=pillar)


def test_invalid_additions_are_refused_with_the_key_named(tmp_path: Path) -> None:
    async def scenario(rig: ModuleRig) -> None:
        bad = await rig.call("schedule.add", "x", "function=test.ping", "seconds=5", "when=noon")
        assert bad.retcode == 1
        assert bad.ret["comment"].startswith("schedule job 'x': key 'when': Salt's 'when' is not")
        none = await rig.call("schedule.add", "y", "function=test.ping")
        assert "no timing given" in none.ret["comment"]
        assert (await rig.call("schedule.list", "return_yaml=False")).ret == {}
        assert not (tmp_path / "cache" / SAVED_FILE).exists()

    run(tmp_path, scenario)


def test_without_a_running_agent_changes_are_saved_for_the_next_start(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, schedule={})
    ctx.loader = Loader({**BUILTIN_MODULES, "schedule": "autopi_agent.modules.schedule"},
                        entry_points=False)

    async def main() -> None:
        dispatcher = Dispatcher(ctx)
        try:
            added = await dispatcher.run("schedule.add", ["later", "function=test.ping", "days=1"])
            assert added.ret["result"] is True
            listed = await dispatcher.run("schedule.list", ["return_yaml=False"])
            assert listed.ret == {"later": {"function": "test.ping", "days": 1, "enabled": True}}
            refused = await dispatcher.run("schedule.run_job", ["later"])
            assert refused.ret["result"] is False and "not running" in refused.ret["comment"]
        finally:
            await dispatcher.aclose()

    asyncio.run(main())

    async def restarted(rig: ModuleRig) -> None:
        assert rig.book.get("later") is not None

    run(tmp_path, restarted)
