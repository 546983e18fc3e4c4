"""The running vehicle: scenario, clock, power and each ECU's DTC memory, shared by the ECUs."""

from __future__ import annotations

import threading

import structlog

from hil import j1979
from hil.clock import Clock
from hil.dtc import DtcMemory
from hil.errors import ScenarioError
from hil.power import PowerSim
from hil.scenario import Scenario
from hil.signals import Signals, Snapshot, counters_at
from hil.vehicle import VehicleProfile

log = structlog.get_logger(__name__)


class VehicleModel:
    """Thread-safe state of one simulated car; ECU nodes ask it to answer requests."""

    def __init__(self, vehicle: VehicleProfile, scenario: Scenario, clock: Clock, power: PowerSim) -> None:
        self.vehicle = vehicle
        self.clock = clock
        self.power = power
        self._lock = threading.RLock()
        self._scenario = scenario
        self._start = clock.now()
        self._memory: dict[str, DtcMemory] = {}
        self.set_scenario(scenario)

    @property
    def scenario(self) -> Scenario:
        with self._lock:
            return self._scenario

    def set_scenario(self, scenario: Scenario) -> None:
        """Switch scenario: time restarts at 0, DTC memories and power follow the new one."""
        unknown = set(scenario.dtcs) - set(self.vehicle.ecu_names)
        if unknown:
            raise ScenarioError(
                f"scenario {scenario.name!r} has DTCs for ECU(s) {sorted(unknown)} that vehicle "
                f"{self.vehicle.name!r} does not have ({', '.join(self.vehicle.ecu_names)})"
            )
        with self._lock:
            self._scenario = scenario
            self._start = self.clock.now()
            self._memory = {ecu.name: scenario.initial_memory(ecu.name) for ecu in self.vehicle.ecus}
            self.power.drive(scenario.battery_voltage, scenario.ignition_on, self._start)
        log.info("scenario.started", scenario=scenario.name, vehicle=self.vehicle.name)

    def scenario_time(self) -> float:
        with self._lock:
            return self.clock.now() - self._start

    def powered(self) -> bool:
        """ECUs are awake only with the ignition on."""
        return self.power.ignition

    def signals(self) -> Signals:
        with self._lock:
            t = self.scenario_time()
            return self._scenario.sample(self.vehicle, t, self.power.battery_voltage)

    def memory(self, ecu: str) -> DtcMemory:
        with self._lock:
            return self._memory[ecu]

    def snapshot(self, ecu: str) -> Snapshot:
        with self._lock:
            t = self.scenario_time()
            memory = self._memory[ecu]
            return Snapshot(
                signals=self._scenario.sample(self.vehicle, t, self.power.battery_voltage),
                counters=counters_at(memory, t, self._scenario.odometer(t)),
                dtcs=memory,
                vehicle=self.vehicle,
                ecu=self.vehicle.ecu(ecu),
            )

    def serve(self, ecu: str, request: bytes, *, functional: bool) -> bytes | None:
        """Answer `request` as `ecu`, applying its side effects (service 04 clears memory)."""
        with self._lock:
            reply = j1979.respond(request, self.snapshot(ecu), functional=functional)
            if reply.clear_dtcs:
                t = self.scenario_time()
                self._memory[ecu] = self._memory[ecu].cleared(t, self._scenario.odometer(t))
                log.info("ecu.dtcs_cleared", ecu=ecu)
            return reply.payload
