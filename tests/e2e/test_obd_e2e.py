"""The reason the product exists: `cloud-master run car-0001 obd.query RPM` answered from a
(simulated) car: master -> ZeroMQ -> agent -> python-OBD -> pty -> ELM327 emulation -> CAN ->
ECU simulator, and back. Also telemetry from a logger into the master's store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil import CarConfig, ManualClock, SimulatedCar
from tests.inproc import running_agent, running_master, until


@pytest.fixture
def car() -> Iterator[SimulatedCar]:
    clock = ManualClock()
    with SimulatedCar(CarConfig(scenario="idle"), clock=clock) as simulated:
        clock.advance(30)  # warm idle
        yield simulated


async def job(master, fun: str, *arg: object, timeout: float = 30) -> object:  # type: ignore[no-untyped-def]
    jid, _ = await master.publish(fun, list(arg), "car-0001", "glob")
    await until(lambda: (r := master.jobcache.get_job(jid)) and r.returns, timeout=timeout)
    return master.jobcache.get_job(jid).returns["car-0001"]


def test_remote_obd_query_vin_and_dtc(tmp_path: Path, car: SimulatedCar) -> None:
    expected_rpm = car.model.signals().rpm

    async def scenario() -> None:
        async with running_master(tmp_path) as master, \
                running_agent(tmp_path / "a", master, "car-0001",
                              obd={"port": car.pty_path, "baudrate": 38400}):
            rpm = await job(master, "obd.query", "RPM")
            assert rpm.retcode == 0, rpm.ret
            assert rpm.ret["unit"] == "revolutions_per_minute" or "rpm" in str(rpm.ret["unit"])
            assert abs(rpm.ret["value"] - expected_rpm) <= 0.25 * expected_rpm + 50
            raw = await job(master, "obd.query", {"__kwarg__": True, "mode": "01", "pid": "0C",
                                                  "decode": False})
            assert raw.retcode == 0 and "raw" in raw.ret
            vin = await job(master, "obd.vin")
            assert vin.ret["vin"] == "WAUZZZ8V7JA031575"
            dtc = await job(master, "obd.dtc")
            assert dtc.retcode == 0
            car.set_scenario("dtc-present")
            dtc = await job(master, "obd.dtc")
            assert {"P0301", "P0171"} <= set(map(str, _codes(dtc.ret["stored"])))
            assert "P0420" in map(str, _codes(dtc.ret["pending"]))
            assert (await job(master, "obd.clear_dtc")).retcode != 0  # needs confirm=True
            cleared = await job(master, "obd.clear_dtc", "confirm=True")
            assert cleared.retcode == 0, cleared.ret
            after = await job(master, "obd.dtc")
            assert _codes(after.ret["stored"]) == [] and _codes(after.ret["pending"]) == []
    asyncio.run(scenario())


def _codes(entries: list[object]) -> list[object]:
    return [e.get("code") if isinstance(e, dict) else e for e in entries]


def test_logger_telemetry_reaches_the_store(tmp_path: Path, car: SimulatedCar) -> None:
    loggers = {"engine": {"pids": ["RPM", "SPEED", "COOLANT_TEMP"], "interval": 0.5}}

    async def scenario() -> None:
        async with running_master(tmp_path) as master, \
                running_agent(tmp_path / "a", master, "car-0001", loggers=loggers,
                              obd={"port": car.pty_path, "baudrate": 38400}):
            store = master.telemetry.store
            await until(lambda: {s.series for s in store.latest(["car-0001"])} >=
                        {"obd.RPM", "obd.SPEED", "obd.COOLANT_TEMP"}, timeout=30)
            latest = {s.series: s for s in store.latest(["car-0001"])}
            assert latest["obd.RPM"].value is not None and latest["obd.RPM"].value > 300
    asyncio.run(scenario())
