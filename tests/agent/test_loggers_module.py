"""The ``loggers`` execution module: status of running loggers (states, counters, gate reasons,
the spool), the local answer without a daemon (CLI), ``loggers.list``, and a remote call."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from autopi_agent.minion.clock import ManualClock
from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.dispatch import Dispatcher, JobResult
from autopi_agent.minion.loader import BUILTIN_MODULES, Loader
from autopi_agent.minion.loggers import LoggerSet, SpoolSink, VehicleGate
from autopi_agent.spool import Spool
from autopi_agent.state.managed_loggers import ManagedLoggers
from tests.agent.carmods import FakeCar
from tests.agent.test_schedule import until
from tests.fleet import REPO
from tests.inproc import running_agent, running_master
from tests.inproc import until as until_async

MODULES = {**BUILTIN_MODULES, "obd": "tests.agent.carmods"}
WALL = 1_700_000_000.0
LOGGERS = {
    "engine": {"pids": ["RPM", "SPEED"], "interval": 1},
    "battery": {"function": "obd.battery", "value_key": "voltage", "interval": 1},
    "broken": {"function": "obd.fail", "interval": 1, "max_backoff": 4},
    "fuel": {"pids": ["FUEL_LEVEL"], "interval": 60, "enabled": False},
}


class Rig:
    """A context with the real LoggerSet and spool registered as the daemon registers them."""

    def __init__(self, tmp_path: Path, loggers: dict[str, Any] | None,
                 pillar: dict[str, Any] | None = None) -> None:
        opts = {"id": "car-0001", "loggers": loggers, "cachedir": str(tmp_path / "cache")}
        self.ctx = AgentContext.create(opts, loader=Loader(MODULES, entry_points=False))
        self.car = self.ctx.services["car"] = FakeCar()
        self.ctx.services["pillar"] = pillar
        self.spool = self.ctx.services["spool"] = Spool(tmp_path / "spool.sqlite")
        self.clock = ManualClock(wall=WALL)
        self.gate = VehicleGate()
        self.dispatcher = Dispatcher(self.ctx)
        self.loggers = LoggerSet(self.dispatcher, SpoolSink(self.spool, lambda: None), loggers,
                                 gate=self.gate, clock=self.clock,
                                 pillar=lambda: self.ctx.services["pillar"])
        self.ctx.services["loggers"] = self.loggers

    async def call(self, fun: str, *arg: Any) -> JobResult:
        return await self.dispatcher.run(fun, list(arg))

    async def close(self) -> None:
        await self.loggers.stop()
        await self.dispatcher.aclose()
        self.spool.close()


def drive(tmp_path: Path, scenario: Callable[[Rig], Awaitable[None]],
          loggers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    async def main() -> None:
        rig = Rig(tmp_path, LOGGERS if loggers is None else loggers, **kwargs)
        try:
            await scenario(rig)
        finally:
            await rig.close()

    asyncio.run(main())


def test_status_of_running_gated_failing_and_stopped_loggers(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        rig.loggers.start()
        await until(lambda: rig.clock.sleepers == len(rig.loggers.loggers) + 1)
        await rig.clock.advance(2)
        rig.gate.engine_running = False  # the engine logger pauses, the battery one goes on
        await rig.clock.advance(1)
        result = await rig.call("loggers.status")
        assert result.retcode == 0, result.ret
        status = result.ret
        assert status["running"] is True and status["errors"] == []
        found = status["loggers"]
        assert sorted(found) == ["battery", "broken", "engine", "fuel"]
        assert found["engine"]["state"] == "gated"
        assert found["engine"]["gate_reason"] == "engine_off"
        assert found["engine"]["samples"] == 3 * 2  # reads at 0, 1, 2 s, two PIDs each
        assert found["battery"]["state"] == "running" and found["battery"]["samples"] == 4
        assert found["battery"]["gate_reason"] is None
        assert found["broken"]["state"] == "failing"
        assert found["broken"]["failures"] >= 1
        assert found["broken"]["last_error"].startswith("adapter_gone")
        assert found["broken"]["gate_reason"] is None and found["broken"]["samples"] == 0
        assert found["fuel"]["state"] == "stopped" and found["fuel"]["enabled"] is False
        assert found["engine"]["function"] == "obd.query_many"
        assert found["engine"]["args"] == ["RPM", "SPEED"]
        assert {entry["source"] for entry in found.values()} == {"config"}
        assert status["spool"] == {"telemetry_waiting": 10, "telemetry_dropped": 0}

    drive(tmp_path, scenario)


def test_adapter_gone_gates_every_obd_logger(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        rig.loggers.start()
        await until(lambda: rig.clock.sleepers == len(rig.loggers.loggers) + 1)
        rig.gate.adapter_present = False
        await rig.clock.advance(4)
        found = (await rig.call("loggers.status")).ret["loggers"]
        for name in ("engine", "battery", "broken"):
            assert (found[name]["state"], found[name]["gate_reason"]) == ("gated", "adapter_gone")
        assert found["fuel"]["gate_reason"] is None

    drive(tmp_path, scenario)


def test_one_logger_by_name_and_an_unknown_name(tmp_path: Path) -> None:
    async def scenario(rig: Rig) -> None:
        rig.loggers.start()
        await until(lambda: rig.clock.sleepers == len(rig.loggers.loggers) + 1)
        one = await rig.call("loggers.status", "engine")
        assert list(one.ret["loggers"]) == ["engine"]
        unknown = await rig.call("loggers.status", "nope")
        assert unknown.retcode != 0
        assert "no logger named 'nope'" in unknown.ret and "engine" in unknown.ret

    drive(tmp_path, scenario)


def test_pillar_loggers_and_their_errors(tmp_path: Path) -> None:
    pillar = {"loggers": {"trip": {"pids": ["SPEED"], "interval": 5},
                          "bad": {"pids": ["RPM"]}}}

    async def scenario(rig: Rig) -> None:
        rig.loggers.start()
        await until(lambda: rig.clock.sleepers == len(rig.loggers.loggers) + 1)
        status = (await rig.call("loggers.status")).ret
        assert status["loggers"]["trip"]["source"] == "pillar"
        assert status["loggers"]["trip"]["state"] == "running"
        assert status["loggers"]["engine"]["source"] == "config"
        assert len(status["errors"]) == 1 and "'bad'" in status["errors"][0]
        listed = (await rig.call("loggers.list")).ret
        assert sorted(listed) == ["engine", "trip"]
        assert listed["trip"] == {"function": "obd.query_many", "args": ["SPEED"], "interval": 5.0,
                                  "requires": "engine", "enabled": True, "series": "obd",
                                  "source": "pillar"}

    drive(tmp_path, scenario, {"engine": LOGGERS["engine"]}, pillar=pillar)


def test_without_a_daemon_the_configured_loggers_are_listed_as_stopped(tmp_path: Path) -> None:
    ctx = AgentContext.create({"id": "car-0001", "loggers": LOGGERS,
                               "cachedir": str(tmp_path / "cache")},
                              loader=Loader(MODULES, entry_points=False))
    ctx.services["pillar"] = {"loggers": {"trip": {"pids": ["SPEED"], "interval": 5},
                                          "engine": {"pids": ["RPM"], "interval": 9}}}
    ManagedLoggers(tmp_path / "cache").put("fleet", {"pids": ["MAF"], "interval": 2})
    dispatcher = Dispatcher(ctx)

    async def scenario() -> JobResult:
        try:
            return await dispatcher.run("loggers.status", [])
        finally:
            await dispatcher.aclose()

    status = asyncio.run(scenario()).ret
    assert status["running"] is False and "spool" not in status
    assert "autopi-agent serve" in status["comment"]
    assert sorted(status["loggers"]) == ["battery", "broken", "engine", "fleet", "fuel", "trip"]
    assert {entry["state"] for entry in status["loggers"].values()} == {"stopped"}
    sources = {name: entry["source"] for name, entry in status["loggers"].items()}
    assert (sources["trip"], sources["fleet"], sources["engine"]) == ("pillar", "state", "config")
    assert status["loggers"]["engine"]["interval"] == 1.0  # the config wins over the pillar


def test_cli_call_without_a_daemon(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({"id": "car-0001", "root_dir": str(tmp_path),
                                      "loggers": {"engine": LOGGERS["engine"]}}))
    proc = subprocess.run([sys.executable, "-m", "autopi_agent.cli", "-c", str(config), "call",
                           "loggers.status", "--out", "json"], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)["local"]
    assert status["running"] is False
    assert status["loggers"]["engine"]["state"] == "stopped"
    assert status["loggers"]["engine"]["interval"] == 1.0


def test_remote_status_from_a_running_agent(tmp_path: Path) -> None:
    # A logger of a function every agent has, so no car is needed.
    loggers = {"version": {"function": "test.version", "interval": 0.05}}

    async def scenario() -> Any:
        async with running_master(tmp_path / "m") as master, \
                running_agent(tmp_path / "a", master, "car-0001", loggers=loggers) as agent:
            await until_async(lambda: agent.loggers.loggers["version"].samples >= 2, timeout=30)
            jid, _ = await master.publish("loggers.status", [], "car-0001", "glob")
            await until_async(lambda: (job := master.jobcache.get_job(jid)) and job.returns,
                              timeout=30)
            return master.jobcache.get_job(jid).returns["car-0001"]

    ret = asyncio.run(scenario())
    assert ret.retcode == 0, ret.ret
    version = ret.ret["loggers"]["version"]
    assert ret.ret["running"] is True
    assert version["state"] == "running" and version["samples"] >= 2
    assert version["function"] == "test.version" and version["requires"] == "none"
