"""Issue 6's scripted scenario: a DTC set in the ECU simulator -> ``vehicle/<id>/dtc/new`` on
the master's bus -> the shipped ``dtc_query`` reaction runs ``obd.dtc`` on that agent -> the
return with the code is in the job cache. Also with the master away when the code appears."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from autopi_agent.minion.daemon import Agent
from cloud_master.events import Event, Subscription
from cloud_master.server import Master
from hil import CarConfig, ManualClock, SimulatedCar
from tests.inproc import running_agent, running_master, until

logging.getLogger("obd").setLevel(logging.CRITICAL)  # python-OBD's own complaints

CAR = "car-0001"
EVENTS = {"dtc_interval": 1}


@pytest.fixture
def car() -> Iterator[SimulatedCar]:
    clock = ManualClock()
    with SimulatedCar(CarConfig(scenario="idle"), clock=clock) as simulated:
        clock.advance(30)  # warm idle, no trouble codes
        yield simulated


def obd_opts(car: SimulatedCar) -> dict[str, Any]:
    return {"obd": {"port": car.pty_path, "baudrate": 38400}, "vehicle_events": EVENTS}


async def next_event(sub: Subscription, tag: str, timeout: float = 60) -> Event:
    """The next event on ``sub`` whose tag is ``tag`` (others are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            event = await sub.get()
            if event.tag == tag:
                return event


async def first_dtc_read(agent: Agent) -> None:
    """Wait until the beacon has read the car's (empty) codes once."""
    await until(lambda: agent.obd_beacon.status()["polls"] >= 1, timeout=60)
    assert agent.obd_beacon.status()["known_codes"] == []


async def reactor_dtc_return(master: Master, timeout: float = 60) -> Any:
    """The return of the reactor's obd.dtc job on CAR, once it is in the job cache."""
    def found() -> Any:
        job = reactor_job(master)
        record = master.jobcache.get_job(job.jid) if job is not None else None
        return record.returns.get(CAR) if record is not None else None
    return await until(found, timeout=timeout)


def reactor_job(master: Master) -> Any:
    """The reactor's obd.dtc job, once published."""
    return next((job for job in master.jobcache.list_jobs(limit=20)
                 if job.fun == "obd.dtc" and job.user == "reactor"), None)


def stored_codes(ret: Any) -> set[str]:
    return {entry["code"] for entry in ret["stored"]}


@contextlib.asynccontextmanager
async def subscribed(master: Master, pattern: str) -> AsyncIterator[Subscription]:
    sub = master.events.subscribe(pattern)
    try:
        yield sub
    finally:
        sub.close()


def test_new_dtc_event_makes_the_reactor_read_the_codes(tmp_path: Path,
                                                       car: SimulatedCar) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path / "m") as master, \
                subscribed(master, f"vehicle/{CAR}/*") as sub, \
                running_agent(tmp_path / "a", master, CAR, **obd_opts(car)) as agent:
            connected = await next_event(sub, f"vehicle/{CAR}/obd/connected")
            assert connected.data["vin"] == "WAUZZZ8V7JA031575"
            assert connected.data["port"] == car.pty_path
            await first_dtc_read(agent)
            car.set_scenario("dtc-present")  # the ECUs now report trouble codes
            event = await next_event(sub, f"vehicle/{CAR}/dtc/new")
            announced = {(c["code"], c["ecu"]) for c in event.data["codes"]}
            assert ("P0301", "7E8") in announced and ("P0420", "7E8") in announced
            assert event.data["id"] == CAR and event.data["mil"] is True
            ret = await reactor_dtc_return(master)
            assert ret.retcode == 0, ret.ret
            assert {"P0301", "P0171"} <= stored_codes(ret.ret)
            # Read again: nothing new, so no second event.
            polls = agent.obd_beacon.status()["polls"]
            await until(lambda: agent.obd_beacon.status()["polls"] >= polls + 2, timeout=60)
            assert agent.events.status()["emitted"].get("dtc/new") == 1
    asyncio.run(scenario())


def test_dtc_seen_while_the_master_is_away_reaches_it_when_it_returns(
        tmp_path: Path, car: SimulatedCar) -> None:
    async def scenario() -> None:
        master_root = tmp_path / "m"
        async with running_master(master_root) as first:
            ports = {"ret_port": first.opts["ret_port"],
                     "publish_port": first.opts["publish_port"]}
            agent_cm = running_agent(tmp_path / "a", first, CAR, return_timeout=2,
                                     **obd_opts(car))
            agent = await agent_cm.__aenter__()
        try:  # the master is gone; the agent keeps running
            await first_dtc_read(agent)
            car.set_scenario("dtc-present")
            await until(lambda: agent.events.status()["emitted"].get("dtc/new") == 1, timeout=60)
            assert agent.spool.stats().count.get("event", 0) >= 1  # kept for the master
            async with running_master(master_root, **ports) as second, \
                    subscribed(second, f"vehicle/{CAR}/dtc/new") as sub:
                event = await next_event(sub, f"vehicle/{CAR}/dtc/new", timeout=90)
                assert "P0301" in {c["code"] for c in event.data["codes"]}
                await until(lambda: agent.spool.stats().count.get("event", 0) == 0, timeout=30)
                # The spooled event goes out only once the car listens to the new master's
                # publisher again, so the reactor's obd.dtc reaches it and returns.
                job = await until(lambda: reactor_job(second), timeout=30)
                assert job.minions == [CAR] and job.tgt == CAR
                ret = await reactor_dtc_return(second)
                assert ret.retcode == 0, ret.ret
                assert "P0301" in stored_codes(ret.ret)
        finally:
            await agent_cm.__aexit__(None, None, None)
    asyncio.run(scenario())
