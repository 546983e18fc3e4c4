"""Service 01 PID encoders against golden vectors computed by hand from the SAE J1979 formulas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hil import load_vehicle
from hil.dtc import DtcMemory
from hil.j1979 import served_pids, service_01
from hil.pids import PIDS, bitmap, supported_set
from hil.signals import Counters, Signals, Snapshot

GOLDEN = sorted((Path(__file__).parent / "golden" / "pids").glob("*.json"))
VEHICLE = load_vehicle("demo-sedan")


def snapshot(ecu: str = "engine", signals: Signals | None = None, dtcs: DtcMemory | None = None) -> Snapshot:
    return Snapshot(signals or Signals(), Counters(), dtcs or DtcMemory(), VEHICLE, VEHICLE.ecu(ecu))


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_pid_golden(path: Path) -> None:
    case = json.loads(path.read_text())
    dtcs = case.get("dtcs", {})
    snap = Snapshot(
        Signals(**case.get("signals", {})),
        Counters(**case.get("counters", {})),
        DtcMemory(
            stored=tuple(dtcs.get("stored", ())),
            mil=dtcs.get("mil", False),
            monitors_complete=dtcs.get("monitors_complete", True),
        ),
        VEHICLE,
        VEHICLE.ecu("engine"),
    )
    pid = int(case["pid"], 16)
    assert PIDS[pid].encode(snap).hex().upper() == case["expected"], case["formula"]


def test_engine_serves_at_least_30_pids_with_the_ones_the_tracker_names() -> None:
    names = {PIDS[p].name for p in VEHICLE.ecu("engine").pids}
    assert len(names) >= 30
    assert {
        "RPM",
        "SPEED",
        "COOLANT_TEMP",
        "ENGINE_LOAD",
        "THROTTLE_POS",
        "INTAKE_TEMP",
        "MAF",
        "FUEL_LEVEL",
        "CONTROL_MODULE_VOLTAGE",
        "RUN_TIME",
        "DISTANCE_W_MIL",
    } <= names


def _decode_bitmaps(ecu: str) -> set[int]:
    """Walk the bitmaps the ECU serves (00, then every one the previous announces)."""
    found: set[int] = set()
    base = 0x00
    while True:
        reply = service_01(bytes([base]), snapshot(ecu))
        assert reply is not None and reply[:2] == bytes([0x41, base])
        bits = int.from_bytes(reply[2:6], "big")
        found |= {base + i for i in range(1, 0x21) if bits & (1 << (0x20 - i))}
        if base + 0x20 not in found:
            return found
        base += 0x20


@pytest.mark.parametrize("ecu", VEHICLE.ecu_names)
def test_bitmaps_announce_exactly_the_pids_that_answer(ecu: str) -> None:
    announced = _decode_bitmaps(ecu)
    answering = {pid for pid in range(1, 0x100) if service_01(bytes([pid]), snapshot(ecu)) is not None}
    assert announced == answering
    assert announced - {0x20, 0x40, 0x60, 0x80, 0xA0, 0xC0, 0xE0} == set(VEHICLE.ecu(ecu).pids)


def test_engine_serves_bitmaps_00_to_60() -> None:
    assert {0x00, 0x20, 0x40, 0x60} <= served_pids(snapshot())
    assert 0x80 not in served_pids(snapshot())


def test_each_data_pid_has_the_size_sae_j1979_gives_it() -> None:
    sizes = {0x01: 4, 0x02: 2, 0x03: 2, 0x0C: 2, 0x10: 2, 0x14: 2, 0x1F: 2, 0x21: 2, 0x3C: 2, 0x42: 2}
    sizes |= {0x43: 2, 0x44: 2, 0x4D: 2, 0x4E: 2, 0x5E: 2, 0x63: 2, 0x31: 2, 0x15: 2}
    for pid, spec in PIDS.items():
        assert len(spec.encode(snapshot())) == sizes.get(pid, 1), spec.name


def test_bitmap_bit_order_msb_is_the_first_pid() -> None:
    assert bitmap(0x00, supported_set({0x01})) == bytes.fromhex("80000000")
    assert bitmap(0x00, supported_set({0x20})) == bytes.fromhex("00000001")
    assert bitmap(0x00, supported_set({0x21})) == bytes.fromhex("00000001")
    assert bitmap(0x20, supported_set({0x21})) == bytes.fromhex("80000000")


def test_multi_pid_request_answers_the_supported_ones_in_order() -> None:
    reply = service_01(bytes([0x0C, 0x99, 0x0D]), snapshot(signals=Signals(rpm=1000, speed=30)))
    assert reply == bytes.fromhex("410C0FA00D1E")


def test_more_than_six_pids_is_not_answered() -> None:
    assert service_01(bytes([0x0C] * 7), snapshot()) is None
