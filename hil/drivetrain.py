"""A small engine and gearbox model: road speed and acceleration in, coherent engine signals out.

Scenarios give the speed profile; RPM, load, throttle, air flow and fuel rate follow from it
here, so that they move together as they do in a real car. Deterministic: the same inputs
always give the same outputs (the idle wobble is a function of scenario time).
"""

from __future__ import annotations

import math

from hil.vehicle import Drivetrain

_AIR_DENSITY = 1.19  # g/L at ~20 °C
_PETROL_DENSITY = 745.0  # g/L
_STOICHIOMETRIC_AFR = 14.7
_DRAG = 0.5 * 1.2 * 0.32 * 2.2  # ½·ρ·Cd·A for a small saloon, N per (m/s)²
_ROLLING = 0.012 * 9.81  # Crr·g, N per kg
_IDLE_LOAD = 18.0  # % calculated load at warm idle
_CRUISE_RPM = 1300.0  # lowest RPM the gear choice accepts when cruising
_PULL_RPM = 1700.0  # ... and when accelerating


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def idle_rpm(drivetrain: Drivetrain, coolant_temp: float, t: float) -> float:
    """Idle speed: raised while the engine is cold, with a small deterministic wobble."""
    cold_boost = max(0.0, 60.0 - coolant_temp) * 5.0
    return drivetrain.idle_rpm + cold_boost + 12.0 * math.sin(2 * math.pi * t / 1.7)


def gear_ratio(drivetrain: Drivetrain, speed: float, accel: float) -> float | None:
    """The overall ratio (gear × final drive) of the gear a driver would pick, None in neutral."""
    if speed < 1.0:
        return None
    wheel_rpm = speed / 3.6 / drivetrain.tyre_circumference * 60.0
    floor = _PULL_RPM if accel > 0.3 else _CRUISE_RPM
    chosen = drivetrain.gear_ratios[0]
    for ratio in drivetrain.gear_ratios:
        if wheel_rpm * ratio * drivetrain.final_drive >= floor:
            chosen = ratio
    return chosen * drivetrain.final_drive


def engine_rpm(drivetrain: Drivetrain, speed: float, accel: float, idle: float) -> float:
    ratio = gear_ratio(drivetrain, speed, accel)
    if ratio is None:
        return idle
    wheel_rpm = speed / 3.6 / drivetrain.tyre_circumference * 60.0
    rpm = max(idle, wheel_rpm * ratio)
    if speed < 10.0 and accel > 0.0:
        rpm = max(rpm, idle + 700.0 * min(accel, 2.0) / 2.0)  # clutch slipping away from rest
    return min(rpm, drivetrain.redline_rpm)


def engine_load(drivetrain: Drivetrain, speed: float, accel: float, rpm: float) -> float:
    """Calculated load (%): the power the road asks for against what the engine can give."""
    v = speed / 3.6
    if accel < -0.3 and speed > 15.0:
        return 8.0  # overrun: throttle shut, fuel cut
    force = drivetrain.mass * accel + _DRAG * v * v + _ROLLING * drivetrain.mass
    demand_w = max(force * v, 0.0)
    available_w = 0.9 * drivetrain.reference_torque * rpm * 2 * math.pi / 60.0
    return _clamp(_IDLE_LOAD + 82.0 * demand_w / max(available_w, 1.0), 0.0, 100.0)


def engine_signals(
    drivetrain: Drivetrain,
    *,
    speed: float,
    accel: float,
    t: float,
    coolant_temp: float,
    ambient_temp: float,
    barometric_pressure: float,
) -> dict[str, float]:
    """Signals of a running engine, keyed by `Signals` field name."""
    rpm = engine_rpm(drivetrain, speed, accel, idle_rpm(drivetrain, coolant_temp, t))
    load = engine_load(drivetrain, speed, accel, rpm)
    fuel_cut = load <= 8.0
    throttle = _clamp(12.0 + 0.8 * (load - _IDLE_LOAD), 11.0, 100.0) if not fuel_cut else 11.0
    pedal = _clamp(14.5 + 1.05 * (throttle - 12.0), 14.5, 100.0)
    maf = rpm / 120.0 * drivetrain.displacement * _AIR_DENSITY * (0.25 + 0.75 * load / 100.0)
    warm = coolant_temp >= 60.0
    closed_loop = warm and not fuel_cut
    return {
        "rpm": rpm,
        "engine_load": load,
        "absolute_load": load * 0.9,
        "throttle_pos": throttle,
        "relative_throttle_pos": _clamp(throttle - 11.0, 0.0, 100.0),
        "throttle_pos_b": _clamp(throttle * 0.5 + 8.0, 0.0, 100.0),
        "commanded_throttle": _clamp(throttle - 1.0, 0.0, 100.0),
        "accelerator_pos_d": pedal,
        "accelerator_pos_e": pedal / 2.0,
        "maf": maf,
        "intake_pressure": min(barometric_pressure, 22.0 + 0.8 * load),
        "fuel_rate": 0.0 if fuel_cut else maf / _STOICHIOMETRIC_AFR / _PETROL_DENSITY * 3600.0,
        "timing_advance": 8.0 + rpm / 300.0 - load / 8.0,
        "short_fuel_trim": 3.0 * math.sin(2 * math.pi * t / 3.1) if closed_loop else 0.0,
        "long_fuel_trim": 2.3,
        "o2_b1s1_voltage": 0.45 + 0.4 * math.sin(2 * math.pi * t * 1.2) if closed_loop else 0.1,
        "o2_b1s2_voltage": 0.68,
        "equivalence_ratio": 1.0,
        "demand_torque": _clamp(load * 0.95, 0.0, 100.0),
        "actual_torque": _clamp(load * 0.9, 0.0, 100.0),
        "intake_temp": ambient_temp + (14.0 if speed < 10.0 else 8.0),
        "oil_temp": coolant_temp - 3.0,
        "catalyst_temp": ambient_temp + (coolant_temp - ambient_temp) * 4.0 + 3.5 * load,
        "fuel_pressure": 380.0,
        "fuel_system": 2.0 if closed_loop else (4.0 if fuel_cut else 1.0),
    }


def engine_off_signals(
    *, coolant_temp: float, ambient_temp: float, barometric_pressure: float
) -> dict[str, float]:
    """Signals with the ignition on and the engine stopped: no air, no fuel, MAP at ambient."""
    return {
        "rpm": 0.0,
        "engine_load": 0.0,
        "throttle_pos": 11.0,
        "accelerator_pos_d": 14.5,
        "accelerator_pos_e": 7.25,
        "intake_pressure": barometric_pressure,
        "intake_temp": ambient_temp,
        "oil_temp": coolant_temp,
        "catalyst_temp": coolant_temp,
        "o2_b1s1_voltage": 0.45,
        "o2_b1s2_voltage": 0.45,
        "fuel_system": 0.0,
    }
