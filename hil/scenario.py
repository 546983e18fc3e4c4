"""Scenarios: what the car does over time, and the signals it shows at any instant (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType

from hil.drivetrain import engine_off_signals, engine_signals
from hil.dtc import DtcMemory
from hil.signals import Signals
from hil.timeline import StepTimeline, Timeline
from hil.vehicle import VehicleProfile

POWER_SIGNALS = frozenset({"battery_voltage"})


@dataclass(frozen=True, slots=True)
class InitialCounters:
    """Counter values at scenario time 0."""

    distance_since_clear: float = 0.0  # km
    minutes_since_clear: float = 0.0
    warmups_since_clear: int = 0
    distance_w_mil: float = 0.0  # km
    minutes_w_mil: float = 0.0
    run_time: float = 0.0  # s the engine has already been running at t=0


@dataclass(frozen=True, slots=True)
class DtcSpec:
    """The codes one ECU holds when the scenario starts."""

    stored: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    permanent: tuple[str, ...] = ()
    mil: bool | None = None  # None: on when any code is stored
    monitors_complete: bool = True


def _empty_signals() -> Mapping[str, Timeline]:
    return MappingProxyType({})


def _empty_dtcs() -> Mapping[str, DtcSpec]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named situation: ignition, engine, keyframed signals, counters and DTCs."""

    name: str
    description: str = ""
    ignition: StepTimeline = StepTimeline.constant(True)
    engine_running: StepTimeline = StepTimeline.constant(True)
    signals: Mapping[str, Timeline] = field(default_factory=_empty_signals)
    counters: InitialCounters = InitialCounters()
    dtcs: Mapping[str, DtcSpec] = field(default_factory=_empty_dtcs)
    period: float | None = None  # seconds; the timeline repeats when set

    def ignition_on(self, t: float) -> bool:
        return self.ignition.at(t)

    def running(self, t: float) -> bool:
        return self.ignition.at(t) and self.engine_running.at(t)

    def odometer(self, t: float) -> float:
        """Kilometres driven since scenario time 0."""
        speed = self.signals.get("speed")
        return speed.integral(t) / 3600.0 if speed else 0.0

    def battery_voltage(self, t: float) -> float:
        """Battery voltage: from the timeline, else what a healthy 12 V system shows."""
        timeline = self.signals.get("battery_voltage")
        if timeline is not None:
            return timeline.at(t)
        if self.running(t):
            return 14.1
        return 12.3 if self.ignition_on(t) else 12.6

    def initial_memory(self, ecu: str) -> DtcMemory:
        """The DTC memory of `ecu` at t=0; counters are set so they read their initial values."""
        spec = self.dtcs.get(ecu, DtcSpec())
        mil = bool(spec.stored) if spec.mil is None else spec.mil
        c = self.counters
        return DtcMemory(
            stored=spec.stored,
            pending=spec.pending,
            permanent=spec.permanent,
            mil=mil,
            monitors_complete=spec.monitors_complete,
            cleared_at=-c.minutes_since_clear * 60.0,
            odometer_at_clear=-c.distance_since_clear,
            mil_on_at=-c.minutes_w_mil * 60.0,
            odometer_at_mil_on=-c.distance_w_mil,
            warmups_since_clear=c.warmups_since_clear,
        )

    def sample(self, vehicle: VehicleProfile, t: float, battery_voltage: float) -> Signals:
        """All signals at scenario time `t`; keyframed values win over the engine model."""
        explicit = {name: tl.at(t) for name, tl in self.signals.items() if name not in POWER_SIGNALS}
        running = self.running(t)
        ambient = explicit.get("ambient_temp", 20.0)
        baro = explicit.get("barometric_pressure", 101.0)
        coolant = explicit.get("coolant_temp", 90.0 if running else ambient)
        speed = explicit.get("speed", 0.0)
        if running:
            speed_tl = self.signals.get("speed")
            accel = speed_tl.slope(t) / 3.6 if speed_tl else 0.0
            model = engine_signals(
                vehicle.drivetrain,
                speed=speed,
                accel=accel,
                t=t,
                coolant_temp=coolant,
                ambient_temp=ambient,
                barometric_pressure=baro,
            )
        else:
            model = engine_off_signals(coolant_temp=coolant, ambient_temp=ambient, barometric_pressure=baro)
        values: dict[str, float] = {
            **model,
            "speed": speed,
            "coolant_temp": coolant,
            "ambient_temp": ambient,
            "barometric_pressure": baro,
            "run_time": self.counters.run_time + t if running else 0.0,
            "control_module_voltage": max(battery_voltage - 0.2, 0.0),
        }
        values.update(explicit)
        known = {f.name for f in fields(Signals)}
        return Signals(**{k: v for k, v in values.items() if k in known})
