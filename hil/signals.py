"""What an ECU knows at one instant: physical signals, DTC counters and its profile (pure values)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from hil.dtc import DtcMemory
from hil.vehicle import EcuProfile, VehicleProfile


@dataclass(frozen=True, slots=True)
class Signals:
    """Instantaneous physical values, in the units SAE J1979 scales from."""

    rpm: float = 0.0  # 1/min
    speed: float = 0.0  # km/h
    engine_load: float = 0.0  # % (calculated load value)
    absolute_load: float = 0.0  # %
    throttle_pos: float = 0.0  # % (absolute throttle position A)
    relative_throttle_pos: float = 0.0  # %
    throttle_pos_b: float = 0.0  # %
    accelerator_pos_d: float = 0.0  # %
    accelerator_pos_e: float = 0.0  # %
    commanded_throttle: float = 0.0  # %
    coolant_temp: float = 20.0  # °C
    intake_temp: float = 20.0  # °C
    ambient_temp: float = 20.0  # °C
    oil_temp: float = 20.0  # °C
    catalyst_temp: float = 20.0  # °C (bank 1 sensor 1)
    maf: float = 0.0  # g/s
    intake_pressure: float = 101.0  # kPa absolute (MAP)
    barometric_pressure: float = 101.0  # kPa
    fuel_pressure: float = 0.0  # kPa gauge
    fuel_level: float = 50.0  # %
    fuel_rate: float = 0.0  # L/h
    timing_advance: float = 0.0  # degrees before TDC
    short_fuel_trim: float = 0.0  # % (bank 1)
    long_fuel_trim: float = 0.0  # % (bank 1)
    o2_b1s1_voltage: float = 0.45  # V
    o2_b1s2_voltage: float = 0.45  # V
    equivalence_ratio: float = 1.0  # commanded lambda
    control_module_voltage: float = 12.4  # V
    demand_torque: float = 0.0  # % of reference torque
    actual_torque: float = 0.0  # % of reference torque
    run_time: float = 0.0  # s since engine start
    fuel_system: float = 0.0  # J1979 fuel system status code (2 = closed loop)


SIGNAL_NAMES: frozenset[str] = frozenset(f.name for f in fields(Signals))


@dataclass(frozen=True, slots=True)
class Counters:
    """Counters that follow from DTC memory, time and distance."""

    distance_w_mil: float = 0.0  # km
    distance_since_clear: float = 0.0  # km
    minutes_w_mil: float = 0.0
    minutes_since_clear: float = 0.0
    warmups_since_clear: int = 0


def counters_at(memory: DtcMemory, now: float, odometer: float) -> Counters:
    """Derive the J1979 counters of one ECU at scenario time `now` and odometer `odometer` km."""
    return Counters(
        distance_w_mil=max(odometer - memory.odometer_at_mil_on, 0.0) if memory.mil else 0.0,
        distance_since_clear=max(odometer - memory.odometer_at_clear, 0.0),
        minutes_w_mil=max(now - memory.mil_on_at, 0.0) / 60 if memory.mil else 0.0,
        minutes_since_clear=max(now - memory.cleared_at, 0.0) / 60,
        warmups_since_clear=memory.warmups_since_clear,
    )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one ECU needs to answer a request at one instant."""

    signals: Signals
    counters: Counters
    dtcs: DtcMemory
    vehicle: VehicleProfile
    ecu: EcuProfile
