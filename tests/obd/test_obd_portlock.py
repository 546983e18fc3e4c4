"""One process at a time on the adapter: a local call while the daemon has it is refused
with a clear error (never interleaved with the daemon's conversation), and the lock goes
with the session that held it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from autopi_agent.obd import ObdOwner, ObdSettings
from autopi_agent.portlock import PortBusy, PortLock
from hil import CarConfig, ManualClock, SimulatedCar
from tests.obd.helpers import Agent


@pytest.fixture
def car() -> Iterator[SimulatedCar]:
    with SimulatedCar(CarConfig(scenario="idle", tcp_port=None), clock=ManualClock()) as simulated:
        yield simulated


def test_two_names_of_one_port_share_the_lock(tmp_path: Path) -> None:
    device = tmp_path / "ttyAMA0"
    device.touch()
    alias = tmp_path / "serial0"
    alias.symlink_to(device)
    first = PortLock(str(device), tmp_path / "locks")
    first.acquire()
    with pytest.raises(PortBusy, match=f"in use by another process \\(pid {os.getpid()}\\)"):
        PortLock(str(alias), tmp_path / "locks").acquire()
    first.release()
    second = PortLock(str(alias), tmp_path / "locks")
    second.acquire()
    assert second.held
    second.release()


def test_a_local_call_is_refused_while_another_process_has_the_adapter(
        tmp_path: Path, car: SimulatedCar) -> None:
    locks = tmp_path / "cache" / "locks"
    opts = {"obd": {"port": car.pty_path, "baudrate": 38400, "protocol": "6", "timeout": 2},
            "cachedir": str(tmp_path / "cache")}
    daemon = PortLock(car.pty_path, locks)
    daemon.acquire()  # what the daemon holds while its session is open
    refused = Agent(None, opts).run("obd.query", "RPM")
    assert refused.retcode == 49, refused.ret
    assert refused.ret.startswith("ERROR: adapter_busy: ") and f"pid {os.getpid()}" in refused.ret
    daemon.release()
    answered = Agent(None, opts).run("obd.query", "RPM")
    assert answered.retcode == 0, answered.ret
    assert answered.ret["unit"] == "rpm"


def test_the_owner_holds_the_lock_while_connected_and_gives_it_back(
        tmp_path: Path, car: SimulatedCar) -> None:
    locks = tmp_path / "locks"
    settings = ObdSettings.from_opts({"port": car.pty_path, "baudrate": 38400, "protocol": "6",
                                      "timeout": 2})
    owner = ObdOwner(settings, lock_dir=locks).start()
    try:
        assert Agent(owner).run("obd.query", "RPM").retcode == 0
        with pytest.raises(PortBusy):
            PortLock(car.pty_path, locks).acquire()
    finally:
        owner.close()
    after = PortLock(car.pty_path, locks)
    after.acquire()
    assert after.held
    after.release()
