"""Vehicle profiles: VIN, bus protocol, drivetrain and the ECUs with what each serves (pure values)."""

from __future__ import annotations

from dataclasses import dataclass

# ISO 15765-4 11-bit identifiers: requests to 0x7E0-0x7E7, answers from request + 8
FUNCTIONAL_REQUEST_ID = 0x7DF
PHYSICAL_REQUEST_IDS = range(0x7E0, 0x7E8)
RESPONSE_ID_OFFSET = 8


@dataclass(frozen=True, slots=True)
class Drivetrain:
    """What the engine model needs to turn road speed into RPM, load and air flow."""

    idle_rpm: float = 780.0
    redline_rpm: float = 6500.0
    gear_ratios: tuple[float, ...] = (3.45, 1.94, 1.29, 0.97, 0.80)
    final_drive: float = 4.06
    tyre_circumference: float = 1.93  # metres
    displacement: float = 1.6  # litres
    mass: float = 1300.0  # kg
    reference_torque: float = 250.0  # N·m, served as PID 0x63


@dataclass(frozen=True, slots=True)
class EcuProfile:
    """One ECU on the bus: its addresses, the service 01 PIDs it serves and its service 09 data."""

    name: str
    request_id: int
    pids: frozenset[int]
    ecu_name: str
    calibration_ids: tuple[str, ...] = ()
    cvns: tuple[bytes, ...] = ()
    has_vin: bool = False
    response_delay: float = 0.005  # seconds between request and answer

    @property
    def response_id(self) -> int:
        return self.request_id + RESPONSE_ID_OFFSET


@dataclass(frozen=True, slots=True)
class VehicleProfile:
    """A car as the simulator presents it."""

    name: str
    description: str
    vin: str
    protocol: str  # ELM327 protocol number of the bus: "6" (CAN 11/500) or "8" (CAN 11/250)
    ecus: tuple[EcuProfile, ...]
    drivetrain: Drivetrain = Drivetrain()
    obd_standard: int = 1  # PID 0x1C code: 1 = OBD-II as defined by CARB
    fuel_type: int = 1  # PID 0x51 code: 1 = gasoline
    o2_sensors: int = 0x03  # PID 0x13 bitmap: bank 1 sensors 1 and 2

    def ecu(self, name: str) -> EcuProfile:
        for ecu in self.ecus:
            if ecu.name == name:
                return ecu
        known = ", ".join(e.name for e in self.ecus)
        raise KeyError(f"vehicle {self.name!r} has no ECU named {name!r} (it has: {known})")

    @property
    def ecu_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.ecus)
