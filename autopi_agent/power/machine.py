"""The power manager's decisions as a pure state machine: readings and time in, actions out.

States: ``starting`` (no reading yet), ``engine_on``, ``engine_off`` (the sleep timer runs),
then one final state once the dongle decides to power down: ``sleeping``, ``hibernating``
or ``shutting_down``. The runner (manager.py) does the I/O the actions ask for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autopi_agent.power.settings import PowerSettings

__all__ = ["DOWN_STATES", "Emit", "EngineGate", "PowerDown", "PowerMachine", "Reading"]

STARTING, ENGINE_ON, ENGINE_OFF = "starting", "engine_on", "engine_off"
DOWN_STATES = {"sleep": "sleeping", "hibernate": "hibernating", "shutdown": "shutting_down"}


@dataclass(frozen=True, slots=True)
class Reading:
    """One look at the car: monotonic time (s), battery voltage (V) and ignition line.

    None means unknown (the MCU did not answer, or there is no such line).
    """

    now: float
    battery_voltage: float | None
    ignition: bool | None


@dataclass(frozen=True, slots=True)
class Emit:
    """Send the vehicle event ``name`` (such as ``engine/start``) with ``data``."""

    name: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EngineGate:
    """Tell the loggers whether the engine runs."""

    running: bool


@dataclass(frozen=True, slots=True)
class PowerDown:
    """Power the dongle down: ``kind`` is sleep, hibernate or shutdown."""

    kind: str
    reason: str


Action = Emit | EngineGate | PowerDown


class _Hold:
    """Since when a condition has held without a break (None while it does not hold)."""

    __slots__ = ("since",)

    def __init__(self) -> None:
        self.since: float | None = None

    def update(self, holds: bool, now: float) -> float:
        """Seconds the condition has held, as of ``now``."""
        if not holds:
            self.since = None
            return 0.0
        if self.since is None:
            self.since = now
        return now - self.since


class PowerMachine:
    """Feed it ``Reading``s in time order; it answers with the actions to take."""

    def __init__(self, settings: PowerSettings) -> None:
        self.settings = settings
        self.state = STARTING
        self.ignition: bool | None = None
        self.engine_running: bool | None = None
        self.battery_voltage: float | None = None
        self.engine_off_since: float | None = None
        self._low = _Hold()
        self._critical = _Hold()

    @property
    def down(self) -> bool:
        """True once a power-down was decided (no more readings change anything)."""
        return self.state in DOWN_STATES.values()

    def sleep_remaining(self, now: float) -> float | None:
        """Seconds until the sleep timer fires, None when it is not running."""
        if self.state != ENGINE_OFF or self.engine_off_since is None or not self.settings.sleep_after:
            return None
        return max(0.0, self.engine_off_since + self.settings.sleep_after - now)

    def feed(self, reading: Reading) -> list[Action]:
        """The actions this reading calls for."""
        if self.down:
            return []
        if reading.battery_voltage is not None:
            self.battery_voltage = reading.battery_voltage
        actions = self._ignition(reading.ignition)
        actions += self._engine(reading)
        return actions + self._power(reading)

    def request(self, kind: str, reason: str) -> list[Action]:
        """A power-down asked for by a user (power.sleep, power.hibernate, power.shutdown)."""
        if self.down:
            return []
        return self._down(kind, reason)

    def _ignition(self, ignition: bool | None) -> list[Action]:
        if ignition is None or ignition == self.ignition:
            return []
        first = self.ignition is None
        self.ignition = ignition
        if first and not ignition:
            return []  # parked at boot: nothing happened
        return [Emit("ignition/on" if ignition else "ignition/off",
                     {"battery_voltage": self.battery_voltage})]

    def _engine(self, reading: Reading) -> list[Action]:
        voltage = reading.battery_voltage
        if voltage is None and reading.ignition is None:
            return []
        running = bool(reading.ignition) or (voltage is not None and
                                             voltage >= self.settings.engine_on_voltage)
        if running == self.engine_running:
            return []
        first = self.engine_running is None
        self.engine_running = running
        self.state = ENGINE_ON if running else ENGINE_OFF
        self.engine_off_since = None if running else reading.now
        actions: list[Action] = [EngineGate(running)]
        if not (first and not running):
            actions.append(Emit("engine/start" if running else "engine/stop",
                                {"battery_voltage": self.battery_voltage}))
        return actions

    def _power(self, reading: Reading) -> list[Action]:
        voltage, settings = reading.battery_voltage, self.settings
        critical = voltage is not None and voltage <= settings.critical_voltage
        if self._critical.update(critical, reading.now) >= settings.critical_hold and critical:
            return [Emit("battery/critical", {"battery_voltage": voltage}),
                    *self._down("shutdown", "critical_voltage")]
        low = (voltage is not None and voltage <= settings.low_voltage
               and self.state == ENGINE_OFF)
        if self._low.update(low, reading.now) >= settings.low_voltage_hold and low:
            return [Emit("battery/low", {"battery_voltage": voltage}),
                    *self._down("hibernate", "low_voltage")]
        remaining = self.sleep_remaining(reading.now)
        if remaining is not None and remaining <= 0:
            return self._down("sleep", "engine_off")
        return []

    def _down(self, kind: str, reason: str) -> list[Action]:
        self.state = DOWN_STATES[kind]
        return [EngineGate(False), PowerDown(kind, reason)]
