"""Vehicle events: config, disabled globs, rate limits, thread safety, the spool, the master."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autopi_agent.config import load_agent_config
from autopi_agent.minion.vehicle_events import EventSettings, VehicleEvents
from autopi_agent.spool import Spool
from autopi_common.config import ConfigError
from tests.inproc import running_agent, running_master, until


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Outbox:
    """A ``fire`` that records what it was given (and can be told to fail)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.threads: set[str] = set()
        self.broken = False

    async def fire(self, tag: str, data: dict[str, Any]) -> str:
        if self.broken:
            raise OSError("disk full")
        self.events.append((tag, data))
        self.threads.add(threading.current_thread().name)
        return str(len(self.events))


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    opened = Spool(tmp_path / "spool.sqlite")
    yield opened
    opened.close()


def spooled(spool: Spool) -> list[dict[str, Any]]:
    return [item.data() for item in spool.peek(100, 1 << 20, ("event",))]


# -- settings ---------------------------------------------------------------------------

def test_agent_config_validates_the_section_with_clear_errors() -> None:
    opts = load_agent_config(None, {"id": "car-a", "vehicle_events": {"disabled": ["battery/*"]}})
    assert opts["vehicle_events"] == {"enabled": True, "disabled": ["battery/*"],
                                      "rate_limit": {}, "dtc_interval": 300.0}
    with pytest.raises(ConfigError, match=r"vehicle_events\.rate_limit.*'dtc/new' is -5"):
        load_agent_config(None, {"id": "a", "vehicle_events": {"rate_limit": {"dtc/new": -5}}})
    with pytest.raises(ConfigError, match=r"vehicle_events\.disabled': expected a list"):
        load_agent_config(None, {"id": "a", "vehicle_events": {"disabled": "battery/*"}})
    with pytest.raises(ConfigError, match=r"vehicle_events\.dtc_interval"):
        load_agent_config(None, {"id": "a", "vehicle_events": {"dtc_interval": -1}})
    with pytest.raises(ConfigError, match="vehicle_events"):
        VehicleEvents("a", Outbox().fire, {"rate_limit": {"x": "often"}})


def test_rate_limit_lookup_exact_name_then_glob_then_default() -> None:
    settings = EventSettings.from_opts(
        {"rate_limit": {"default": 5, "battery/*": 30, "battery/critical": 0, "dtc/new": 60}})
    assert settings.min_gap("battery/critical") == 0
    assert settings.min_gap("battery/low") == 30
    assert settings.min_gap("dtc/new") == 60
    assert settings.min_gap("ignition/on") == 5
    assert EventSettings.from_opts(None).min_gap("anything") == 0


# -- filtering --------------------------------------------------------------------------

def test_disabled_globs_and_switch_suppress_and_count() -> None:
    outbox = Outbox()

    async def scenario() -> None:
        events = VehicleEvents("car-a", outbox.fire, {"disabled": ["battery/*", "obd/disconnected"]})
        events.attach(asyncio.get_running_loop())
        assert events.emit("battery/low", {"voltage": 11.9}) is False
        assert events.emit("obd/disconnected") is False
        assert events.emit("obd/connected", {"vin": "WAUZZZ8V7JA031575"}) is True
        assert events.is_enabled("battery/critical") is False
        await events.drain()
        off = VehicleEvents("car-a", outbox.fire, {"enabled": False})
        assert off.emit("ignition/on") is False
        assert events.status()["disabled"] == {"battery/low": 1, "obd/disconnected": 1}

    asyncio.run(scenario())
    assert [tag for tag, _ in outbox.events] == ["vehicle/car-a/obd/connected"]
    assert outbox.events[0][1]["vin"] == "WAUZZZ8V7JA031575" and "ts" in outbox.events[0][1]


def test_rate_limit_per_name_with_an_injected_clock() -> None:
    outbox, clock = Outbox(), Clock()

    async def scenario() -> VehicleEvents:
        events = VehicleEvents("car-a", outbox.fire,
                               {"rate_limit": {"dtc/new": 60, "battery/*": 10}}, clock=clock)
        events.attach(asyncio.get_running_loop())
        assert events.emit("dtc/new", {"n": 1})
        clock.now += 59.9
        assert not events.emit("dtc/new", {"n": 2})
        assert events.emit("ignition/on")  # another name: its own limit (none)
        assert events.emit("ignition/on")
        assert events.emit("battery/low")
        assert not events.emit("battery/low")
        clock.now += 0.1
        assert events.emit("dtc/new", {"n": 3})
        assert not await events.emit_now("dtc/new", {"n": 4})
        await events.drain()
        return events

    events = asyncio.run(scenario())
    assert [data.get("n") for tag, data in outbox.events if tag.endswith("dtc/new")] == [1, 3]
    status = events.status()
    assert status["rate_limited"] == {"dtc/new": 2, "battery/low": 1}
    assert status["emitted"] == {"dtc/new": 2, "ignition/on": 2, "battery/low": 1}
    assert status["rate_limit"] == {"default": 0.0, "dtc/new": 60.0, "battery/*": 10.0}


def test_bad_names_are_refused() -> None:
    events = VehicleEvents("car-a", Outbox().fire, None)
    for name in ("", "/ignition/on", "ignition/"):
        with pytest.raises(ValueError, match="bad vehicle event name"):
            events.emit(name)


# -- delivery ---------------------------------------------------------------------------

def test_emit_from_worker_threads_spools_every_event_on_the_loop() -> None:
    outbox = Outbox()
    clock = Clock()

    async def scenario() -> VehicleEvents:
        events = VehicleEvents("car-a", outbox.fire, {"rate_limit": {"power/*": 3600}},
                               clock=clock)
        events.attach(asyncio.get_running_loop())
        accepted: list[bool] = []
        lock = threading.Lock()

        def worker(index: int) -> None:
            for count in range(50):
                ok = events.emit(f"test/w{index}", {"count": count})
                ok_power = events.emit("power/wake", {"worker": index})
                with lock:
                    accepted.extend([ok, ok_power])

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        await asyncio.gather(*(asyncio.to_thread(t.start) for t in threads))
        await asyncio.gather(*(asyncio.to_thread(t.join, 30) for t in threads))
        await until(lambda: len(outbox.events) == 401, timeout=30)
        await events.drain()
        assert accepted.count(True) == 401  # 400 test events, one power/wake
        return events

    events = asyncio.run(scenario())
    per_worker = {f"vehicle/car-a/test/w{i}": 0 for i in range(8)}
    for tag, data in outbox.events:
        if tag in per_worker:
            assert data["count"] == per_worker[tag]  # each thread's events in its order
            per_worker[tag] += 1
    assert set(per_worker.values()) == {50}
    assert outbox.threads == {threading.main_thread().name}  # spooled on the loop only
    assert events.status()["rate_limited"] == {"power/wake": 399}


def test_emit_now_returns_once_the_event_is_in_the_spool(spool: Spool) -> None:
    async def fire(tag: str, data: dict[str, Any]) -> str:
        return await asyncio.to_thread(spool.put, "event", {"tag": tag, "data": data})

    async def scenario() -> None:
        events = VehicleEvents("car-a", fire, None)
        events.attach(asyncio.get_running_loop())
        assert events.emit("engine/stop")  # queued, not yet written
        assert await events.emit_now("power/sleep", {"reason": "engine off"})
        # On disk when emit_now returns, and after what was emitted before it.
        assert [e["tag"] for e in spooled(spool)] == ["vehicle/car-a/engine/stop",
                                                      "vehicle/car-a/power/sleep"]
        assert spooled(spool)[1]["data"]["reason"] == "engine off"
        # From a worker thread with its own loop: still spooled by the agent's loop.
        result = await asyncio.to_thread(asyncio.run, events.emit_now("power/wake"))
        assert result is True
        assert len(spooled(spool)) == 3

    asyncio.run(scenario())


def test_events_before_the_loop_runs_are_held_then_spooled(spool: Spool) -> None:
    async def fire(tag: str, data: dict[str, Any]) -> str:
        return await asyncio.to_thread(spool.put, "event", {"tag": tag, "data": data})

    events = VehicleEvents("car-a", fire, None)
    assert events.emit("power/wake", {"reason": "ignition"})
    assert events.status()["waiting"] == 1

    async def scenario() -> None:
        events.attach(asyncio.get_running_loop())
        await until(lambda: events.status()["emitted"])
        await events.drain()

    asyncio.run(scenario())
    assert [e["tag"] for e in spooled(spool)] == ["vehicle/car-a/power/wake"]


def test_a_failing_spool_is_counted_and_reported() -> None:
    outbox = Outbox()
    outbox.broken = True

    async def scenario() -> VehicleEvents:
        events = VehicleEvents("car-a", outbox.fire, None)
        events.attach(asyncio.get_running_loop())
        assert events.emit("engine/start")  # accepted; the spool write fails later
        assert not await events.emit_now("engine/stop")
        await events.drain()
        return events

    events = asyncio.run(scenario())
    assert events.status()["failed"] == {"engine/start": 1, "engine/stop": 1}


# -- through a running agent to a real master --------------------------------------------

def test_agent_events_reach_the_master_bus_and_beacons_status(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path) as master, \
                running_agent(tmp_path / "a", master, "car-a",
                              vehicle_events={"disabled": ["battery/*"]}) as agent:
            sub = master.events.subscribe("vehicle/*")
            try:
                events = agent.context.services["vehicle_events"]
                assert events is agent.events
                assert not await asyncio.to_thread(events.emit, "battery/low")
                assert await asyncio.to_thread(events.emit, "ignition/on", {"source": "gpio"})
                event = await asyncio.wait_for(sub.get(), 15)
                assert event.tag == "vehicle/car-a/ignition/on"
                assert event.data["source"] == "gpio" and event.data["id"] == "car-a"
                jid, _ = await master.publish("beacons.status", [], "car-a")
                await until(lambda: (r := master.jobcache.get_job(jid)) and r.returns, 20)
                record = master.jobcache.get_job(jid)
                assert record is not None
                status = record.returns["car-a"].ret["events"]
                assert status["emitted"] == {"ignition/on": 1}
                assert status["disabled"] == {"battery/low": 1}
            finally:
                sub.close()
    asyncio.run(scenario())


def test_events_emitted_while_the_master_is_down_arrive_after_it_returns(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        master_root = tmp_path / "m"
        async with running_master(master_root) as first:
            ports = {"ret_port": first.opts["ret_port"],
                     "publish_port": first.opts["publish_port"]}
            agent_cm = running_agent(tmp_path / "a", first, "car-a", return_timeout=1)
            agent = await agent_cm.__aenter__()
        try:
            # The master is gone: the agent keeps the events in its spool.
            for name in ("ignition/off", "engine/stop", "power/sleep"):
                assert await agent.events.emit_now(name, {"odometer": 1234})
            assert agent.spool.stats().count.get("event", 0) >= 3
            async with running_master(master_root, **ports) as second:
                sub = second.events.subscribe("vehicle/car-a/*")
                try:
                    seen = [(await asyncio.wait_for(sub.get(), 60)).tag for _ in range(3)]
                finally:
                    sub.close()
                assert seen == ["vehicle/car-a/ignition/off", "vehicle/car-a/engine/stop",
                                "vehicle/car-a/power/sleep"]
                await until(lambda: agent.spool.stats().count.get("event", 0) == 0, 20)
        finally:
            await agent_cm.__aexit__(None, None, None)
    asyncio.run(scenario())
