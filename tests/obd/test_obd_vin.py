"""A VIN that starts with 1 and ends with 2, read end to end (python-OBD alone mangles it)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import obd
import pytest

from autopi_agent.obd import ObdOwner, ObdSettings, car_grains
from hil import CarConfig, ManualClock, SimulatedCar, load_vehicle
from tests.obd.helpers import Agent

VIN = "1FTFW1ET5DFC10312"  # North American: '1' = USA; any digit may end a VIN


@pytest.fixture
def car(tmp_path: Path) -> Iterator[SimulatedCar]:
    vehicle = dataclasses.replace(load_vehicle("demo-sedan"), vin=VIN)
    config = CarConfig(vehicle=vehicle, scenario="idle", baud=38400, reset_delay=0.5,
                       link_dir=tmp_path)
    with SimulatedCar(config, clock=ManualClock()) as car:
        yield car


def test_vin_is_decoded_from_its_bytes_not_stripped(
        car: SimulatedCar, make_owner: Callable[[ObdSettings], ObdOwner]) -> None:
    owner = make_owner(ObdSettings.from_opts({"port": car.pty_path, "baudrate": 38400,
                                              "protocol": "6"}))
    result = Agent(owner).run("obd.vin")
    assert result.retcode == 0, result.ret
    assert result.ret == {"vin": VIN, "raw": "490201" + VIN.encode().hex().upper()}
    assert car_grains(owner)["obd"]["vin"] == VIN
    # Without the guard: python-OBD's decoder strips every leading/trailing 0, 1 and 2.
    logging.getLogger("obd").setLevel(logging.CRITICAL)
    alone = obd.OBD(car.tcp_url, baudrate=38400, protocol="6", fast=False)
    try:
        assert bytes(alone.query(obd.commands.VIN).value).decode() == "FTFW1ET5DFC103"
    finally:
        alone.close()
