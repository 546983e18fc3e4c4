"""SAE J1979 service 01 PIDs: raw bytes written from the standard's scaling formulas (pure).

Each encoder inverts the formula SAE J1979 gives for the PID (e.g. RPM = (256A+B)/4, so
A,B = 4·rpm as a 16-bit word), rounding and clamping to the range the bytes can carry.
This table is independent of any decoder (the agent's or python-OBD's) on purpose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hil.dtc import encode_dtc
from hil.signals import Snapshot

Encoder = Callable[[Snapshot], bytes]

BITMAP_PIDS = tuple(range(0x00, 0x100, 0x20))  # 00, 20, 40 ... E0: "PIDs supported [n+1, n+0x20]"


def u8(value: float) -> bytes:
    return bytes([min(max(round(value), 0), 0xFF)])


def u16(value: float) -> bytes:
    return min(max(round(value), 0), 0xFFFF).to_bytes(2, "big")


def percent(value: float) -> bytes:
    """A = value·255/100 (0..100 %)."""
    return u8(value * 255.0 / 100.0)


def temperature(value: float) -> bytes:
    """A = value + 40 (-40..215 °C)."""
    return u8(value + 40.0)


def fuel_trim(value: float) -> bytes:
    """A = value·128/100 + 128 (-100..99.2 %)."""
    return u8(value * 128.0 / 100.0 + 128.0)


def torque_percent(value: float) -> bytes:
    """A = value + 125 (-125..130 %)."""
    return u8(value + 125.0)


def _monitor_status(s: Snapshot) -> bytes:
    # A: MIL (bit 7) and count of confirmed codes; B: misfire, fuel and component monitors
    # supported (bits 0-2), all complete; C: spark-ignition monitors supported (catalyst,
    # evaporative system, O2 sensor, O2 heater); D: the same bits set while not yet complete.
    a = (0x80 if s.dtcs.mil else 0x00) | min(len(s.dtcs.stored), 0x7F)
    supported = 0x01 | 0x04 | 0x20 | 0x40
    return bytes([a, 0x07, supported, 0x00 if s.dtcs.monitors_complete else supported])


def _freeze_dtc(s: Snapshot) -> bytes:
    return encode_dtc(s.dtcs.stored[0]) if s.dtcs.stored else b"\x00\x00"


def _o2(voltage: float, trim: float | None) -> bytes:
    # A = V/0.005; B = short term trim like PID 06, or 0xFF when the sensor is not used for trim
    return u8(voltage / 0.005) + (b"\xff" if trim is None else fuel_trim(trim))


def rpm(value: float) -> bytes:
    """(256A+B)/4 rpm."""
    return u16(value * 4.0)


def word_hundredths(value: float) -> bytes:
    """(256A+B)/100, e.g. MAF in g/s."""
    return u16(value * 100.0)


def timing(value: float) -> bytes:
    """A/2 - 64 degrees."""
    return u8((value + 64.0) * 2.0)


def catalyst(value: float) -> bytes:
    """(256A+B)/10 - 40 °C."""
    return u16((value + 40.0) * 10.0)


def millivolts(value: float) -> bytes:
    """(256A+B)/1000 V."""
    return u16(value * 1000.0)


def percent_word(value: float) -> bytes:
    """(256A+B)·100/255 %."""
    return u16(value * 255.0 / 100.0)


def ratio(value: float) -> bytes:
    """(256A+B)/32768 (2/65536 per bit)."""
    return u16(value * 32768.0)


def fuel_rate(value: float) -> bytes:
    """(256A+B)/20 L/h."""
    return u16(value * 20.0)


def fuel_pressure(value: float) -> bytes:
    """3A kPa."""
    return u8(value / 3.0)


@dataclass(frozen=True, slots=True)
class PidSpec:
    """One service 01 PID: number, name (as in SAE J1979 / python-OBD) and encoder."""

    pid: int
    name: str
    encode: Encoder


def _signal(pid: int, name: str, signal: str, scale: Callable[[float], bytes]) -> PidSpec:
    def encode(snapshot: Snapshot) -> bytes:
        return scale(getattr(snapshot.signals, signal))

    return PidSpec(pid, name, encode)


def _counter(pid: int, name: str, counter: str, scale: Callable[[float], bytes]) -> PidSpec:
    def encode(snapshot: Snapshot) -> bytes:
        return scale(getattr(snapshot.counters, counter))

    return PidSpec(pid, name, encode)


_TABLE: tuple[PidSpec, ...] = (
    PidSpec(0x01, "STATUS", _monitor_status),
    PidSpec(0x02, "FREEZE_DTC", _freeze_dtc),
    PidSpec(0x03, "FUEL_STATUS", lambda s: u8(s.signals.fuel_system) + b"\x00"),
    _signal(0x04, "ENGINE_LOAD", "engine_load", percent),
    _signal(0x05, "COOLANT_TEMP", "coolant_temp", temperature),
    _signal(0x06, "SHORT_FUEL_TRIM_1", "short_fuel_trim", fuel_trim),
    _signal(0x07, "LONG_FUEL_TRIM_1", "long_fuel_trim", fuel_trim),
    _signal(0x0A, "FUEL_PRESSURE", "fuel_pressure", fuel_pressure),
    _signal(0x0B, "INTAKE_PRESSURE", "intake_pressure", u8),
    _signal(0x0C, "RPM", "rpm", rpm),
    _signal(0x0D, "SPEED", "speed", u8),
    _signal(0x0E, "TIMING_ADVANCE", "timing_advance", timing),
    _signal(0x0F, "INTAKE_TEMP", "intake_temp", temperature),
    _signal(0x10, "MAF", "maf", word_hundredths),
    _signal(0x11, "THROTTLE_POS", "throttle_pos", percent),
    PidSpec(0x13, "O2_SENSORS", lambda s: u8(s.vehicle.o2_sensors)),
    PidSpec(0x14, "O2_B1S1", lambda s: _o2(s.signals.o2_b1s1_voltage, s.signals.short_fuel_trim)),
    PidSpec(0x15, "O2_B1S2", lambda s: _o2(s.signals.o2_b1s2_voltage, None)),
    PidSpec(0x1C, "OBD_COMPLIANCE", lambda s: u8(s.vehicle.obd_standard)),
    _signal(0x1F, "RUN_TIME", "run_time", u16),
    _counter(0x21, "DISTANCE_W_MIL", "distance_w_mil", u16),
    _signal(0x2F, "FUEL_LEVEL", "fuel_level", percent),
    _counter(0x30, "WARMUPS_SINCE_DTC_CLEAR", "warmups_since_clear", u8),
    _counter(0x31, "DISTANCE_SINCE_DTC_CLEAR", "distance_since_clear", u16),
    _signal(0x33, "BAROMETRIC_PRESSURE", "barometric_pressure", u8),
    _signal(0x3C, "CATALYST_TEMP_B1S1", "catalyst_temp", catalyst),
    _signal(0x42, "CONTROL_MODULE_VOLTAGE", "control_module_voltage", millivolts),
    _signal(0x43, "ABSOLUTE_LOAD", "absolute_load", percent_word),
    _signal(0x44, "COMMANDED_EQUIV_RATIO", "equivalence_ratio", ratio),
    _signal(0x45, "RELATIVE_THROTTLE_POS", "relative_throttle_pos", percent),
    _signal(0x46, "AMBIANT_AIR_TEMP", "ambient_temp", temperature),
    _signal(0x47, "THROTTLE_POS_B", "throttle_pos_b", percent),
    _signal(0x49, "ACCELERATOR_POS_D", "accelerator_pos_d", percent),
    _signal(0x4A, "ACCELERATOR_POS_E", "accelerator_pos_e", percent),
    _signal(0x4C, "THROTTLE_ACTUATOR", "commanded_throttle", percent),
    _counter(0x4D, "RUN_TIME_MIL", "minutes_w_mil", u16),
    _counter(0x4E, "TIME_SINCE_DTC_CLEARED", "minutes_since_clear", u16),
    PidSpec(0x51, "FUEL_TYPE", lambda s: u8(s.vehicle.fuel_type)),
    _signal(0x5C, "OIL_TEMP", "oil_temp", temperature),
    _signal(0x5E, "FUEL_RATE", "fuel_rate", fuel_rate),
    _signal(0x61, "DRIVER_DEMAND_TORQUE", "demand_torque", torque_percent),
    _signal(0x62, "ACTUAL_TORQUE", "actual_torque", torque_percent),
    PidSpec(0x63, "REFERENCE_TORQUE", lambda s: u16(s.vehicle.drivetrain.reference_torque)),
)

PIDS: dict[int, PidSpec] = {spec.pid: spec for spec in _TABLE}
PIDS_BY_NAME: dict[str, PidSpec] = {spec.name: spec for spec in _TABLE}


def supported_set(data_pids: Iterable[int]) -> frozenset[int]:
    """Data PIDs plus the bitmap PIDs a J1979 ECU must then serve.

    Bitmap PID n is served when n is 0x00 or when any served PID lies above n: bit
    (n - m) of bitmap m says "PID n is supported", and the next bitmap is a PID too.
    """
    data = frozenset(data_pids)
    highest = max(data, default=0)
    return data | frozenset(n for n in BITMAP_PIDS if n == 0 or n < highest)


def bitmap(base: int, served: frozenset[int]) -> bytes:
    """The 4 bytes of bitmap PID `base`: MSB of A is PID base+1, LSB of D is PID base+0x20."""
    value = 0
    for offset in range(1, 0x21):
        if base + offset in served:
            value |= 1 << (0x20 - offset)
    return value.to_bytes(4, "big")
