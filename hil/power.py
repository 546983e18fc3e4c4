"""Battery voltage and ignition as the adapter and ECUs see them (driven by the scenario)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from hil.clock import Clock


@dataclass(frozen=True, slots=True)
class PowerState:
    battery_voltage: float  # V at the OBD connector (pin 16)
    ignition: bool


class PowerSim:
    """The car's 12 V supply and ignition line.

    A scenario drives it (`drive`), with time measured from the scenario's start on the
    given clock; `override` pins either value at run time (a control command, a test)
    until `release`. Thread-safe: the adapter and the ECUs read it from their threads.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._voltage: Callable[[float], float] = lambda t: 12.6
        self._ignition: Callable[[float], bool] = lambda t: False
        self._start = clock.now()
        self._voltage_override: float | None = None
        self._ignition_override: bool | None = None

    def drive(
        self, voltage: Callable[[float], float], ignition: Callable[[float], bool], start: float
    ) -> None:
        """Follow these functions of scenario time, which began at clock time `start`."""
        with self._lock:
            self._voltage, self._ignition, self._start = voltage, ignition, start

    def override(self, *, battery_voltage: float | None = None, ignition: bool | None = None) -> None:
        """Pin the battery voltage and/or the ignition (None leaves that one as it is)."""
        if battery_voltage is not None and not 0.0 <= battery_voltage <= 30.0:
            raise ValueError(f"battery voltage {battery_voltage} V is outside 0..30 V")
        with self._lock:
            if battery_voltage is not None:
                self._voltage_override = battery_voltage
            if ignition is not None:
                self._ignition_override = ignition

    def release(self) -> None:
        """Drop overrides: follow the scenario again."""
        with self._lock:
            self._voltage_override = None
            self._ignition_override = None

    def state(self) -> PowerState:
        with self._lock:
            t = self._clock.now() - self._start
            voltage = self._voltage_override if self._voltage_override is not None else self._voltage(t)
            ignition = self._ignition_override if self._ignition_override is not None else self._ignition(t)
        return PowerState(round(voltage, 3), ignition)

    @property
    def battery_voltage(self) -> float:
        return self.state().battery_voltage

    @property
    def ignition(self) -> bool:
        return self.state().ignition
