"""A broadcast request waits for every ECU that lists the PID, even after one was late.

SPEED comes from the engine and the transmission (hil's demo sedan). With fast requests the
agent appends the number of answers to wait for (``010D2``). If that number were learnt
from a reply where the transmission was late (one answer), the adapter would stop after the
engine's answer from then on, and the transmission's answer would arrive during the next
request, to be taken for its answer. The count never drops below the number of ECUs whose
supported-PID bitmap lists the PID.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from autopi_agent.obd import ObdOwner, ObdSettings
from hil import CarConfig, ManualClock, SimulatedCar, parse_fault
from tests.obd.fakes import MonitoringAdapter
from tests.obd.helpers import Agent


@pytest.fixture
def car_and_adapter(tmp_path: Path) -> Iterator[tuple[SimulatedCar, MonitoringAdapter]]:
    with SimulatedCar(CarConfig(scenario="idle", adapter=False), clock=ManualClock()) as car:
        with MonitoringAdapter(tmp_path / "obd", car.open_adapter()) as front:
            yield car, front


def sent_since(front: MonitoringAdapter, mark: int) -> list[bytes]:
    return [line for line in bytes(front.received[mark:]).split(b"\r") if line]


def test_a_late_ecu_does_not_shrink_the_answer_count(
        car_and_adapter: tuple[SimulatedCar, MonitoringAdapter],
        make_owner: Callable[[ObdSettings], ObdOwner]) -> None:
    car, front = car_and_adapter
    owner = make_owner(ObdSettings.from_opts({"port": front.path, "baudrate": 38400,
                                              "protocol": "6", "timeout": 2, "fast": True}))
    agent = Agent(owner)
    assert agent.run("obd.query", "SPEED").retcode == 0  # learns the count: two answers
    car.inject(parse_fault("slow-ecu", {"ecu": "transmission", "delay": "0.4"}))
    try:
        late = agent.run("obd.query", "SPEED")  # only the engine answers in time
        assert late.retcode == 0, late.ret
    finally:
        car.clear_fault("slow-ecu")
    time.sleep(1.0)  # the transmission works through its late answers
    mark = len(front.received)
    again = agent.run("obd.query", "SPEED")
    assert again.retcode == 0, again.ret
    assert sent_since(front, mark) == [b"010D2"]
