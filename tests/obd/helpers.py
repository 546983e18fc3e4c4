"""Helpers for the OBD tests: the bench (simulated car or rig), an agent with a dispatcher."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.dispatch import Dispatcher, JobResult
from autopi_agent.minion.loader import BUILTIN_MODULES, Loader
from autopi_agent.obd import ObdOwner, ObdSettings
from hil import BusConfig, CarConfig, ManualClock, SimulatedCar

# Until loader.py lists it (see the report): the module under test, by its import path.
MODULES = {**BUILTIN_MODULES, "obd": "autopi_agent.modules.obd"}


@dataclass
class Bench:
    """Where the agent's adapter is (``port``) and the ECUs it reaches (``car``)."""

    kind: str  # "sim" or "rig"
    car: SimulatedCar
    clock: ManualClock
    port: str

    def settings(self, **overrides: Any) -> ObdSettings:
        section: dict[str, Any] = {"port": self.port, "baudrate": 38400, "protocol": "6",
                                   "timeout": 2.0, "connect_timeout": 10.0,
                                   "reconnect_min": 0.2, "reconnect_max": 1.0}
        return ObdSettings.from_opts({**section, **overrides})


def start_bench(kind: str, config: pytest.Config, link_dir: Path, scenario: str,
                **options: Any) -> Bench:
    clock = ManualClock()
    if kind == "rig":
        bus = BusConfig(interface="socketcan", channel=config.getoption("--rig-can"))
        car = SimulatedCar(CarConfig(scenario=scenario, adapter=False, bus=bus), clock=clock)
        return Bench(kind, car.start(), clock, str(config.getoption("--rig")))
    # UART pacing at 38400 baud and a half-second ATZ, like a real adapter.
    options = {"baud": 38400, "reset_delay": 0.5, "tcp_port": 0, "link_dir": link_dir, **options}
    car = SimulatedCar(CarConfig(scenario=scenario, **options), clock=clock)
    car.start()
    return Bench(kind, car, clock, car.pty_path if car.config.pty else car.tcp_url)


def threads_settle(before: set[threading.Thread], seconds: float = 5.0) -> list[str]:
    """Names of threads started since ``before`` still alive after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        extra = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            return extra
        time.sleep(0.05)


class Agent:
    """An AgentContext with the owner registered as the daemon does, and its dispatcher."""

    def __init__(self, owner: ObdOwner | None, opts: dict[str, Any] | None = None) -> None:
        self.ctx = AgentContext.create({"id": "car-0001", **(opts or {})},
                                       loader=Loader(MODULES, entry_points=False))
        if owner is not None:
            self.ctx.services["obd"] = owner
        self.dispatcher = Dispatcher(self.ctx)

    def run(self, fun: str, *args: Any, timeout: float | None = None) -> JobResult:
        """Run ``fun`` with wire arguments (``"RPM"``, ``"decode=False"``) to the end."""
        return asyncio.run(self.dispatcher.run(fun, list(args), timeout=timeout))
