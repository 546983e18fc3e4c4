"""Read vehicle profiles and scenarios from YAML files, by bundled name or by path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from hil.dtc import is_dtc
from hil.errors import ConfigError, ScenarioError, VehicleError
from hil.pids import PIDS, PIDS_BY_NAME
from hil.scenario import POWER_SIGNALS, DtcSpec, InitialCounters, Scenario
from hil.signals import SIGNAL_NAMES
from hil.timeline import StepTimeline, Timeline
from hil.vehicle import PHYSICAL_REQUEST_IDS, Drivetrain, EcuProfile, VehicleProfile

_VIN_CHARS = frozenset("0123456789ABCDEFGHJKLMNPRSTUVWXYZ")
_BUNDLED = {"vehicles": VehicleError, "scenarios": ScenarioError}


def _bundled_dir(kind: str) -> Path:
    return Path(__file__).resolve().parent / kind


def available(kind: str) -> list[str]:
    """Names of the bundled `vehicles` or `scenarios`."""
    return sorted(p.stem for p in _bundled_dir(kind).glob("*.yaml"))


def _read(kind: str, name_or_path: str | Path) -> tuple[Path, dict[str, Any]]:
    error = _BUNDLED[kind]
    text = str(name_or_path)
    path = (
        Path(text)
        if ("/" in text or text.endswith((".yaml", ".yml")))
        else _bundled_dir(kind) / f"{text}.yaml"
    )
    if not path.is_file():
        raise error(f"no {kind[:-1]} {text!r}: give a file path or one of {', '.join(available(kind))}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping at the top level")
    return path, data


def _check_keys(where: str, data: Mapping[str, Any], allowed: set[str], error: type[ConfigError]) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise error(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


# ---------------------------------------------------------------- vehicles


def _pid_number(where: str, item: object) -> int:
    if isinstance(item, int) and item in PIDS:
        return item
    if isinstance(item, str) and item.upper() in PIDS_BY_NAME:
        return PIDS_BY_NAME[item.upper()].pid
    raise VehicleError(f"{where}: unknown PID {item!r}; known: {', '.join(sorted(PIDS_BY_NAME))}")


def _ecu(where: str, data: Mapping[str, Any]) -> EcuProfile:
    allowed = {"name", "request_id", "ecu_name", "pids", "vin", "calibration_ids", "cvns", "response_delay"}
    _check_keys(where, data, allowed, VehicleError)
    request_id = data.get("request_id")
    if not isinstance(request_id, int) or request_id not in PHYSICAL_REQUEST_IDS:
        raise VehicleError(f"{where}: request_id must be 0x7E0..0x7E7, got {request_id!r}")
    calids = tuple(str(c) for c in data.get("calibration_ids", ()))
    if any(len(c) > 16 for c in calids):
        raise VehicleError(f"{where}: a calibration id has at most 16 characters")
    try:
        cvns = tuple(bytes.fromhex(str(c)) for c in data.get("cvns", ()))
    except ValueError as err:
        raise VehicleError(f"{where}: a CVN is 8 hex digits") from err
    if any(len(c) != 4 for c in cvns):
        raise VehicleError(f"{where}: a CVN is 8 hex digits (4 bytes)")
    return EcuProfile(
        name=str(data.get("name", "")) or f"ecu{request_id - 0x7E0}",
        request_id=request_id,
        pids=frozenset(_pid_number(where, p) for p in data.get("pids", ())),
        ecu_name=str(data.get("ecu_name", "ECU-Unknown")),
        calibration_ids=calids,
        cvns=cvns,
        has_vin=bool(data.get("vin", False)),
        response_delay=float(data.get("response_delay", 0.005)),
    )


def _vin(path: Path, vin: object) -> str:
    if not isinstance(vin, str) or len(vin) != 17 or not set(vin) <= _VIN_CHARS:
        raise VehicleError(f"{path}: vin must be 17 characters from 0-9 and A-Z without I, O, Q; got {vin!r}")
    return vin


def load_vehicle(name_or_path: str | Path) -> VehicleProfile:
    """Load a vehicle profile (`demo-sedan`, or a path to a YAML file)."""
    path, data = _read("vehicles", name_or_path)
    allowed = {
        "name",
        "description",
        "vin",
        "protocol",
        "ecus",
        "drivetrain",
        "obd_standard",
        "fuel_type",
        "o2_sensors",
    }
    _check_keys(str(path), data, allowed, VehicleError)
    protocol = str(data.get("protocol", "6"))
    if protocol not in ("6", "8"):
        raise VehicleError(f"{path}: protocol must be '6' (CAN 11/500) or '8' (CAN 11/250)")
    ecus = tuple(_ecu(f"{path}: ecus[{i}]", e) for i, e in enumerate(data.get("ecus") or ()))
    if not ecus:
        raise VehicleError(f"{path}: a vehicle needs at least one ECU under 'ecus'")
    if len({e.request_id for e in ecus}) != len(ecus) or len({e.name for e in ecus}) != len(ecus):
        raise VehicleError(f"{path}: ECU names and request ids must be unique")
    dt = dict(data.get("drivetrain") or {})
    _check_keys(f"{path}: drivetrain", dt, set(Drivetrain.__dataclass_fields__), VehicleError)
    if "gear_ratios" in dt:
        dt["gear_ratios"] = tuple(float(r) for r in dt["gear_ratios"])
    return VehicleProfile(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        vin=_vin(path, data.get("vin")),
        protocol=protocol,
        ecus=ecus,
        drivetrain=Drivetrain(**dt),
        obd_standard=int(data.get("obd_standard", 1)),
        fuel_type=int(data.get("fuel_type", 1)),
        o2_sensors=int(data.get("o2_sensors", 0x03)),
    )


# ---------------------------------------------------------------- scenarios


def _steps(where: str, value: object, period: float | None) -> StepTimeline:
    if isinstance(value, bool):
        return StepTimeline.constant(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        try:
            return StepTimeline.from_points(list(value), period)
        except (TypeError, ValueError) as err:
            raise ScenarioError(f"{where}: {err}") from err
    raise ScenarioError(f"{where}: expected true/false or a list of [time, true|false]")


def _timeline(where: str, value: object, period: float | None) -> Timeline:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Timeline.constant(float(value))
    if isinstance(value, Sequence) and not isinstance(value, str):
        try:
            return Timeline.from_points(list(value), period)
        except (TypeError, ValueError) as err:
            raise ScenarioError(f"{where}: {err}") from err
    raise ScenarioError(f"{where}: expected a number or a list of [time, value] keyframes")


def _period(path: Path, data: Mapping[str, Any]) -> float | None:
    if not data.get("loop", False):
        return None
    duration = data.get("duration")
    if duration is None:
        ends = [p[0] for tl in (data.get("timeline") or {}).values() if isinstance(tl, list) for p in tl]
        duration = max(ends, default=0)
    if not isinstance(duration, int | float) or duration <= 0:
        raise ScenarioError(f"{path}: a looping scenario needs a positive duration")
    return float(duration)


def _dtc_spec(where: str, data: Mapping[str, Any]) -> DtcSpec:
    _check_keys(where, data, {"stored", "pending", "permanent", "mil", "monitors_complete"}, ScenarioError)
    lists = {}
    for key in ("stored", "pending", "permanent"):
        codes = tuple(str(c).upper() for c in data.get(key) or ())
        bad = [c for c in codes if not is_dtc(c)]
        if bad:
            raise ScenarioError(f"{where}.{key}: not DTCs: {bad} (expected e.g. P0301)")
        lists[key] = codes
    mil = data.get("mil")
    return DtcSpec(
        stored=lists["stored"],
        pending=lists["pending"],
        permanent=lists["permanent"],
        mil=None if mil is None else bool(mil),
        monitors_complete=bool(data.get("monitors_complete", True)),
    )


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a scenario (`idle`, `city-drive`, ..., or a path to a YAML file)."""
    path, data = _read("scenarios", name_or_path)
    allowed = {
        "name",
        "description",
        "loop",
        "duration",
        "ignition",
        "engine_running",
        "timeline",
        "counters",
        "dtcs",
    }
    _check_keys(str(path), data, allowed, ScenarioError)
    period = _period(path, data)
    raw_timeline = data.get("timeline") or {}
    unknown = set(raw_timeline) - SIGNAL_NAMES - POWER_SIGNALS
    if unknown:
        raise ScenarioError(
            f"{path}: unknown signal(s) {sorted(unknown)}; known: {sorted(SIGNAL_NAMES | POWER_SIGNALS)}"
        )
    counters = dict(data.get("counters") or {})
    _check_keys(f"{path}: counters", counters, set(InitialCounters.__dataclass_fields__), ScenarioError)
    dtcs = {
        str(ecu): _dtc_spec(f"{path}: dtcs.{ecu}", spec or {})
        for ecu, spec in (data.get("dtcs") or {}).items()
    }
    return Scenario(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")).strip(),
        ignition=_steps(f"{path}: ignition", data.get("ignition", True), period),
        engine_running=_steps(f"{path}: engine_running", data.get("engine_running", True), period),
        signals=MappingProxyType(
            {name: _timeline(f"{path}: timeline.{name}", v, period) for name, v in raw_timeline.items()}
        ),
        counters=InitialCounters(**counters),
        dtcs=MappingProxyType(dtcs),
        period=period,
    )
