"""Runners: the loader, manage.*, jobs.* and fleet.summary against a real master and agents."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import cast

import pytest

from autopi_proto import rsa
from cloud_master.events import Event
from cloud_master.runners import (
    JobNotFound,
    RunnerArgumentError,
    RunnerContext,
    RunnerLoader,
    UnknownRunner,
    split_arguments,
)
from cloud_master.runners.presence import Presence, minion_of
from cloud_master.server import Master
from cloud_master.telemetry.model import Sample
from tests.inproc import running_agent, running_master, until


def context(master: Master) -> RunnerContext:
    """The master as runners see it, with the presence watcher the master will own."""
    if not isinstance(vars(master).get("presence"), Presence):  # before the master owns one
        vars(master)["presence"] = Presence()
    return cast(RunnerContext, master)


def accept_key_without_agent(master: Master, minion_id: str) -> None:
    pem = rsa.public_pem(rsa.generate_private_key()).decode()
    master.keys.register(minion_id, pem)
    master.keys.accept(minion_id)


# -- the loader ---------------------------------------------------------------------------

def test_builtin_runners_are_listed() -> None:
    names = RunnerLoader(entry_points=False).list_functions()
    for name in ("manage.status", "manage.up", "manage.down", "jobs.list", "jobs.lookup_jid",
                 "jobs.active", "fleet.summary"):
        assert name in names
    assert "jobs.list_" not in names


@pytest.mark.parametrize(("name", "match"), [
    ("status", "module.function"),
    ("nosuch.status", "no runner module 'nosuch'"),
    ("manage.nosuch", r"known: manage.down, manage.status, manage.up"),
])
def test_unknown_runner_names_what_exists(name: str, match: str) -> None:
    with pytest.raises(UnknownRunner, match=match):
        RunnerLoader(entry_points=False).function(name)


def test_a_broken_runner_module_is_reported_not_raised() -> None:
    loader = RunnerLoader({"broken": "cloud_master.no_such_module"}, entry_points=False)
    with pytest.raises(UnknownRunner, match="failed to load: ModuleNotFoundError"):
        loader.function("broken.x")
    assert loader.list_functions() == []


def test_wire_arguments_split_into_args_and_kwargs() -> None:
    assert split_arguments(["a", 1, {"__kwarg__": True, "limit": 3}, {"x": 1}]) == (
        ["a", 1, {"x": 1}], {"limit": 3})


def test_presence_learns_the_minion_from_the_tag() -> None:
    assert minion_of(Event("salt/job/123/ret/car-a", {})) == "car-a"
    assert minion_of(Event("salt/minion/car-b/start", {})) == "car-b"
    assert minion_of(Event("vehicle/car-c/dtc/new", {})) == "car-c"
    assert minion_of(Event("salt/auth", {"id": "car-d", "act": "accept"})) == "car-d"
    assert minion_of(Event("salt/auth", {"id": "car-e", "act": "pend"})) is None
    assert minion_of(Event("salt/job/123/new", {})) is None


# -- against a real master ----------------------------------------------------------------

def test_manage_status_up_and_down(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path / "m", reactor_defaults=[]) as master:
            ctx = context(master)
            loader = RunnerLoader(entry_points=False)
            assert await loader.call(ctx, "manage.status") == {"up": [], "down": []}
            async with running_agent(tmp_path / "a", master, "car-a"):
                accept_key_without_agent(master, "car-b")
                status = await loader.call(ctx, "manage.status", [{"__kwarg__": True, "timeout": 2}])
                assert status == {"up": ["car-a"], "down": ["car-b"]}
                assert await loader.call(ctx, "manage.up", [2]) == ["car-a"]
                assert await loader.call(ctx, "manage.down", [2]) == ["car-b"]
                with pytest.raises(RunnerArgumentError, match="usage: manage.up"):
                    await loader.call(ctx, "manage.up", [1, 2])

    asyncio.run(scenario())


def test_jobs_list_lookup_and_active(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path / "m", reactor_defaults=[]) as master:
            ctx = context(master)
            loader = RunnerLoader(entry_points=False)
            async with running_agent(tmp_path / "a", master, "car-a"):
                accept_key_without_agent(master, "car-b")
                done, _ = await master.publish("test.echo", ["hi"], "car-a")
                await until(lambda: (r := master.jobcache.get_job(done)) and r.returns)
                waiting, _ = await master.publish("test.ping", [], ["car-a", "car-b"], "list")
                await until(lambda: "car-a" in master.tracker.get(waiting).returned)  # type: ignore[union-attr]
                listed = await loader.call(ctx, "jobs.list")
                assert listed[done]["Function"] == "test.echo"
                assert listed[done]["Minions"] == ["car-a"]
                assert set(listed) == {done, waiting}
                assert len(await loader.call(ctx, "jobs.list", [{"__kwarg__": True, "limit": 1}])) == 1
                assert await loader.call(ctx, "jobs.lookup_jid", [done]) == {"car-a": "hi"}
                with pytest.raises(JobNotFound, match="no job 1999"):
                    await loader.call(ctx, "jobs.lookup_jid", ["1999"])
                active = await loader.call(ctx, "jobs.active")
                assert list(active) == [waiting]
                assert active[waiting]["Returned"] == ["car-a"]
                assert active[waiting]["Running"] == ["car-b"]

    asyncio.run(scenario())


def test_fleet_summary(tmp_path: Path) -> None:
    now = time.time()
    samples = [Sample("car-a", "u1", now - 5, "power.ignition", 1.0),
               Sample("car-a", "u2", now - 5, "power.battery_voltage", 12.6, unit="V"),
               Sample("car-a", "u3", now - 4, "gps.lat", 52.52),
               Sample("car-a", "u4", now - 4, "gps.lon", 13.40),
               Sample("car-a", "u5", now - 3, "obd.rpm", 850.0),
               Sample("car-c", "u6", now - 7200, "power.ignition", 0.0),
               Sample("car-c", "u7", now - 7200, "obd.vin", None, text="WVWZZZ1JZXW000001")]

    async def scenario() -> None:
        async with running_master(tmp_path / "m", reactor_defaults=[]) as master:
            ctx = context(master)
            watcher = ctx.presence.start(master.events)
            try:
                async with running_agent(tmp_path / "a", master, "car-a"):
                    await until(lambda: ctx.presence.last_seen("car-a"))
                    for minion_id in ("car-b", "car-c"):
                        accept_key_without_agent(master, minion_id)
                    master.telemetry.store.ingest(samples)
                    fleet = await RunnerLoader(entry_points=False).call(ctx, "fleet.summary")
                    scoped = await RunnerLoader(entry_points=False).call(
                        ctx, "fleet.summary", ["car-c", {"__kwarg__": True, "online_window": 1e6}])
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
        assert sorted(fleet) == ["car-a", "car-b", "car-c"]
        car_a = fleet["car-a"]
        assert car_a["online"] is True and car_a["ignition"] is True
        assert car_a["battery_voltage"] == 12.6
        assert car_a["position"]["lat"] == 52.52 and car_a["position"]["lon"] == 13.40
        assert car_a["telemetry"]["obd.rpm"] == 850.0
        assert car_a["last_seen"] is not None
        assert fleet["car-b"] == {"online": False, "last_seen": None, "last_event": None,
                                  "ignition": None, "battery_voltage": None, "position": None,
                                  "telemetry": {}}
        car_c = fleet["car-c"]
        assert car_c["online"] is False and car_c["ignition"] is False
        assert car_c["telemetry"]["obd.vin"] == "WVWZZZ1JZXW000001"
        assert car_c["last_seen"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 7200))
        assert list(scoped) == ["car-c"] and scoped["car-c"]["online"] is True

    asyncio.run(scenario())
