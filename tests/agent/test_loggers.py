"""Telemetry loggers against a fake car module: samples, change filters, pausing on the gate
and on errors with backoff, resuming, the spool sink, config and pillar loggers."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from autopi_agent.minion.clock import ManualClock
from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.dispatch import Dispatcher, JobResult
from autopi_agent.minion.loader import BUILTIN_MODULES, Loader
from autopi_agent.minion.logger_spec import InvalidLogger
from autopi_agent.minion.loggers import LoggerSet, SpoolSink, VehicleGate, failure_kind
from autopi_agent.spool import Spool
from cloud_master.telemetry.model import sample_from_wire
from tests.agent.carmods import FakeCar
from tests.agent.test_schedule import until

MODULES = {**BUILTIN_MODULES, "obd": "tests.agent.carmods"}
WALL = 1_700_000_000.0
ENGINE = {"engine": {"pids": ["RPM", "SPEED", "COOLANT_TEMP"], "interval": 1}}


class ListSink:
    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    async def write(self, samples: list[dict[str, Any]]) -> None:
        self.batches.append(list(samples))

    def series(self, name: str) -> list[Any]:
        return [sample.get("value", sample.get("text")) for batch in self.batches
                for sample in batch if sample["series"] == name]


class Rig:
    def __init__(self, loggers: dict[str, Any] | None, pillar: dict[str, Any] | None = None,
                 sink: Any = None) -> None:
        self.ctx = AgentContext.create({"id": "car-0001"}, loader=Loader(MODULES, entry_points=False))
        self.car = self.ctx.services["car"] = FakeCar()
        self.ctx.services["pillar"] = pillar
        self.clock = ManualClock(wall=WALL)
        self.gate = VehicleGate()
        self.sink = sink or ListSink()
        self.dispatcher = Dispatcher(self.ctx)
        self.loggers = LoggerSet(self.dispatcher, self.sink, loggers, gate=self.gate,
                                 clock=self.clock, pillar=lambda: self.ctx.services["pillar"])

    async def start(self) -> None:
        self.loggers.start()
        await self.idle()

    async def idle(self) -> None:
        """Wait until every logger (and the pillar watch) sleeps on the clock."""
        await until(lambda: self.clock.sleepers == len(self.loggers.loggers) + 1)

    def state(self, name: str) -> str:
        return self.loggers.loggers[name].state

    async def close(self) -> None:
        await self.loggers.stop()
        await self.dispatcher.aclose()


def drive(scenario: Callable[[Rig], Awaitable[None]], loggers: dict[str, Any] | None,
          **kwargs: Any) -> None:
    async def main() -> None:
        rig = Rig(loggers, **kwargs)
        try:
            await scenario(rig)
        finally:
            await rig.close()

    asyncio.run(main())


def test_one_read_and_one_write_per_tick() -> None:
    async def scenario(rig: Rig) -> None:
        await rig.start()
        assert len(rig.sink.batches) == 1
        await rig.clock.advance(4)
        assert rig.car.reads == 5 and len(rig.sink.batches) == 5
        first = rig.sink.batches[0]
        assert first == [
            {"ts": WALL, "series": "obd.RPM", "value": 800.0, "unit": "rpm"},
            {"ts": WALL, "series": "obd.SPEED", "value": 0.0, "unit": "km/h"},
            {"ts": WALL, "series": "obd.COOLANT_TEMP", "value": 85.0, "unit": "°C"},
        ]
        assert [batch[0]["ts"] for batch in rig.sink.batches] == [WALL + n for n in range(5)]
        assert rig.loggers.status()["engine"]["samples"] == 15

    drive(scenario, ENGINE)


def test_absolute_threshold_and_max_interval() -> None:
    async def scenario(rig: Rig) -> None:
        await rig.start()
        for rpm in (820.0, 860.0, 870.0, 870.0, 870.0, 870.0, 870.0, 700.0):
            rig.car.values["RPM"] = rpm
            await rig.clock.advance(1)
        # 800 kept; 820 (+20) not; 860 (+60) kept; 870 not ... until 5 s after 860; 700 kept
        assert rig.sink.series("obd.RPM") == [800.0, 860.0, 870.0, 700.0]
        assert rig.car.reads == 9

    drive(scenario, {"engine": {"pids": "RPM", "interval": 1, "threshold": 50,
                                "max_interval": 5}})


def test_percent_threshold_and_change_only() -> None:
    async def scenario(rig: Rig) -> None:
        rig.car.values["FUEL_LEVEL"] = 100.0
        await rig.start()
        for level, speed in ((105.0, 0.0), (111.0, 0.0), (0.0, 1.0), (0.0, 1.0)):
            rig.car.values["FUEL_LEVEL"] = level
            rig.car.values["SPEED"] = speed
            await rig.clock.advance(1)
        assert rig.sink.series("obd.FUEL_LEVEL") == [100.0, 111.0, 0.0]
        assert rig.sink.series("obd.SPEED") == [0.0, 1.0]  # max_interval alone: on change

    drive(scenario, {"fuel": {"pids": ["FUEL_LEVEL"], "interval": 1, "threshold": "10%"},
                     "speed": {"pids": ["SPEED"], "interval": 1, "max_interval": 600}})


def test_value_kinds() -> None:
    async def scenario(rig: Rig) -> None:
        rig.car.values = {"A": True, "B": "WVWZZZ1JZXW000001", "C": None, "D": math.nan,
                          "E": [1, 2], "F": 7}
        rig.car.stamp = WALL - 0.25
        await rig.start()
        assert rig.sink.batches == [[
            {"ts": WALL - 0.25, "series": "car.A", "value": 1.0},
            {"ts": WALL - 0.25, "series": "car.B", "text": "WVWZZZ1JZXW000001"},
            {"ts": WALL - 0.25, "series": "car.E", "text": "[1,2]"},
            {"ts": WALL - 0.25, "series": "car.F", "value": 7.0},
        ]]

    drive(scenario, {"kinds": {"pids": ["A", "B", "C", "D", "E", "F"], "interval": 1,
                               "series": "car"}})


def test_gate_pauses_loggers_without_calling_the_car() -> None:
    async def scenario(rig: Rig) -> None:
        await rig.start()
        assert (rig.car.reads, rig.state("engine"), rig.state("battery")) == (2, "running", "running")
        rig.gate.engine_running = False
        await rig.clock.advance(3)
        assert rig.state("engine") == "gated"
        assert rig.car.reads == 2 + 3  # only the battery logger read
        rig.gate.adapter_present = False
        await rig.clock.advance(3)
        assert rig.state("battery") == "gated"
        assert rig.car.reads == 5
        rig.gate.adapter_present, rig.gate.engine_running = True, True
        await rig.clock.advance(1)
        assert (rig.state("engine"), rig.state("battery")) == ("running", "running")
        # the filter starts afresh: an unchanged value is kept right after the pause
        assert rig.sink.series("obd.RPM") == [800.0, 800.0]
        assert rig.sink.series("obd.battery") == [12.6] * 5

    drive(scenario, {"engine": {"pids": ["RPM"], "interval": 1, "threshold": 100},
                     "battery": {"function": "obd.battery", "value_key": "voltage",
                                 "interval": 1}})


def test_errors_pause_with_backoff_and_a_probe_resumes() -> None:
    async def scenario(rig: Rig) -> None:
        rig.car.failure = ("adapter_gone", 47)
        await rig.start()
        assert rig.state("engine") == "failing"
        reads = [rig.car.reads]
        for _ in range(7):
            await rig.clock.advance(1)
            reads.append(rig.car.reads)
        # failed at 0, retried at 1, 3, 7 (1, 2, 4 s), then every 5 s (max_backoff)
        assert reads == [1, 2, 2, 3, 3, 3, 3, 4]
        await rig.clock.advance(5)
        assert rig.car.reads == 5
        status = rig.loggers.status()["engine"]
        assert status["failures"] == 5
        assert status["last_error"].startswith("adapter_gone: ERROR: adapter_gone: ")
        assert rig.sink.batches == []
        rig.car.failure = None
        await rig.clock.advance(5)
        assert rig.state("engine") == "running"
        assert len(rig.sink.batches) == 1
        await rig.clock.advance(1)
        assert len(rig.sink.batches) == 2  # back to the interval

    drive(scenario, {"engine": {"pids": ["RPM"], "interval": 1, "max_backoff": 5}})


def test_partial_answers_are_kept_and_total_no_data_pauses() -> None:
    async def scenario(rig: Rig) -> None:
        rig.car.missing = {"SPEED": "no_data"}
        await rig.start()
        assert rig.state("engine") == "running"
        assert [sample["series"] for sample in rig.sink.batches[0]] == ["obd.RPM"]
        rig.car.missing = {"RPM": "no_data", "SPEED": "no_data"}
        await rig.clock.advance(1)
        assert rig.state("engine") == "failing"
        assert rig.loggers.loggers["engine"].last_error is not None
        assert rig.loggers.loggers["engine"].last_error.startswith("no_data")

    drive(scenario, {"engine": {"pids": ["RPM", "SPEED"], "interval": 1}})


def test_samples_go_to_the_spool_in_one_put_per_tick(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    nudges: list[int] = []
    sink = SpoolSink(spool, lambda: nudges.append(1))

    async def scenario(rig: Rig) -> None:
        await rig.start()
        await rig.clock.advance(2)

    try:
        drive(scenario, ENGINE, sink=sink)
        items = spool.peek(100, 1 << 20, ("telemetry",))
    finally:
        spool.close()
    assert len(items) == 9 and len(nudges) == 3
    samples = [sample_from_wire("car-0001", {"uid": item.id, **item.data()}) for item in items]
    assert {sample.series for sample in samples} == {"obd.RPM", "obd.SPEED", "obd.COOLANT_TEMP"}
    assert samples[0].value == 800.0 and samples[0].unit == "rpm"


def test_a_failing_sink_does_not_stop_the_logger() -> None:
    class FullSink(ListSink):
        async def write(self, samples: list[dict[str, Any]]) -> None:
            raise OSError("disk full")

    async def scenario(rig: Rig) -> None:
        await rig.start()
        await rig.clock.advance(2)
        assert rig.car.reads == 3 and rig.state("engine") == "running"
        assert rig.loggers.status()["engine"]["samples"] == 0

    drive(scenario, ENGINE, sink=FullSink())


def test_pillar_loggers_merge_and_follow_the_pillar() -> None:
    pillar = {"loggers": {"engine": {"pids": ["SPEED"], "interval": 1},
                          "fuel": {"pids": ["FUEL_LEVEL"], "interval": 60},
                          "bad": {"pids": ["RPM"]}}}

    async def scenario(rig: Rig) -> None:
        rig.car.values["FUEL_LEVEL"] = 50.0
        await rig.start()
        assert sorted(rig.loggers.loggers) == ["engine", "fuel"]
        assert rig.loggers.specs()["engine"].arg == ("RPM", "SPEED", "COOLANT_TEMP")  # config wins
        assert rig.loggers.errors == ["logger 'bad': no 'interval' given: the seconds between reads"]
        rig.ctx.services["pillar"] = {"loggers": {"volts": {"function": "obd.battery",
                                                            "value_key": "voltage",
                                                            "interval": 10}}}
        rig.loggers.notify()
        await rig.idle()
        assert sorted(rig.loggers.loggers) == ["engine", "volts"]
        assert rig.sink.series("obd.battery") == [12.6]
        assert rig.sink.series("obd.FUEL_LEVEL") == [50.0]

    drive(scenario, ENGINE, pillar=pillar)


def test_disabled_loggers_do_not_run() -> None:
    async def scenario(rig: Rig) -> None:
        await rig.start()
        await rig.clock.advance(3)
        assert rig.loggers.loggers == {} and rig.car.reads == 0

    drive(scenario, {"engine": {"pids": ["RPM"], "interval": 1, "enabled": False}})


def test_an_invalid_config_is_refused() -> None:
    with pytest.raises(InvalidLogger, match="logger 'engine': key 'threshold'"):
        LoggerSet(Dispatcher(AgentContext.create({"id": "x"})), ListSink(),
                  {"engine": {"pids": ["RPM"], "interval": 1, "threshold": "lots"}})


def result(ret: Any, retcode: int = 0) -> JobResult:
    return JobResult.of(ret, retcode)


@pytest.mark.parametrize(("outcome", "kind"), [
    (result({"RPM": {"value": 1}}), None),
    (result({"RPM": {"value": 1}, "SPEED": {"error": "no_data"}}, 42), None),
    (result({"RPM": {"error": "no_data"}, "SPEED": {"error": "unsupported"}}, 42), "no_data"),
    (result("ERROR: adapter_gone: no adapter on /dev/serial0", 47), "adapter_gone"),
    (result("ERROR: unable_to_connect: the car does not answer", 46), "unable_to_connect"),
    (result("ERROR: obd.query_many exceeded the job time limit of 30 s", 1), "timeout"),
    (result("something odd", 48), "timeout"),
    (result("something odd", 1), "error"),
    (result({"voltage": 12.1, "unit": "V"}), None),
    (result({"state": "idle", "error": {"error": "adapter_gone", "message": "..."}}),
     "adapter_gone"),
    (result(12.5), None),
])
def test_failure_kinds(outcome: JobResult, kind: str | None) -> None:
    assert failure_kind(outcome, "value" if not isinstance(outcome.ret, dict)
                        or "voltage" not in outcome.ret else "voltage") == kind


@pytest.mark.parametrize(("definition", "message"), [
    ({"pids": ["RPM"]}, "no 'interval' given"),
    ({"interval": 1}, "no 'pids' given: obd.query_many needs"),
    ({"pids": [], "interval": 1}, "key 'pids': expected at least one"),
    ({"pids": [1], "interval": 1}, "key 'pids': expected a list of command names"),
    ({"pids": ["RPM"], "args": ["SPEED"], "interval": 1}, "both 'pids' and 'args'"),
    ({"pids": ["RPM"], "interval": 0}, "key 'interval': expected a number above 0"),
    ({"pids": ["RPM"], "interval": "1"}, "key 'interval': expected a number"),
    ({"pids": ["RPM"], "interval": 1, "threshold": -1}, "key 'threshold'"),
    ({"pids": ["RPM"], "interval": 1, "threshold": "x%"}, "key 'threshold'"),
    ({"pids": ["RPM"], "interval": 10, "max_interval": 5}, "key 'max_interval': expected at least"),
    ({"pids": ["RPM"], "interval": 1, "requires": "moon"}, "key 'requires'"),
    ({"pids": ["RPM"], "interval": 1, "enabled": "yes"}, "key 'enabled'"),
    ({"pids": ["RPM"], "interval": 1, "every": 2}, "key 'every' is unknown"),
    ({"function": "battery", "interval": 1}, "key 'function'"),
    ({"function": "power.status", "interval": 1, "kwargs": [1]}, "key 'kwargs'"),
    ("RPM", "expected a mapping"),
])
def test_invalid_logger_definitions_name_the_logger_and_key(definition: Any, message: str) -> None:
    from autopi_agent.minion.logger_spec import parse_logger

    with pytest.raises(InvalidLogger, match=message) as caught:
        parse_logger("engine", definition)
    assert str(caught.value).startswith("logger 'engine': ")


def test_logger_defaults_and_config_check() -> None:
    from autopi_agent.minion.logger_spec import check_loggers, parse_logger

    engine = parse_logger("engine", {"pids": "RPM, SPEED", "interval": 1})
    assert (engine.function, engine.arg, engine.series, engine.requires, engine.filtered) == \
        ("obd.query_many", ("RPM", "SPEED"), "obd", "engine", False)
    volts = parse_logger("volts", {"function": "obd.battery", "interval": 10})
    assert (volts.series, volts.requires) == ("obd.battery", "adapter")
    other = parse_logger("power", {"function": "power.status", "interval": 5,
                                   "kwargs": {"fast": True}})
    assert (other.requires, other.arg) == ("none", ({"__kwarg__": True, "fast": True},))
    assert check_loggers({"engine": {"pids": ["RPM"], "interval": 1}}) is None
    assert check_loggers({"engine": {"pids": ["RPM"]}}) == \
        "valid loggers (logger 'engine': no 'interval' given: the seconds between reads)"
    assert check_loggers(["engine"]) is not None
