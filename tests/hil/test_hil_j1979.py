"""SAE J1979 services and DTC encoding, without a bus."""

from __future__ import annotations

import pytest

from hil import load_vehicle
from hil.dtc import DtcMemory, decode_dtc, encode_dtc
from hil.j1979 import ecu_name_bytes, respond
from hil.signals import Counters, Signals, Snapshot

VEHICLE = load_vehicle("demo-sedan")


def snap(ecu: str = "engine", **memory: object) -> Snapshot:
    return Snapshot(Signals(), Counters(), DtcMemory(**memory), VEHICLE, VEHICLE.ecu(ecu))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "raw"),
    [
        ("P0301", "0301"),
        ("P0171", "0171"),
        ("C0123", "4123"),
        ("B1234", "9234"),
        ("U0100", "C100"),
        ("P3FFF", "3FFF"),
    ],
)
def test_dtc_bytes_follow_j2012_bit_layout(code: str, raw: str) -> None:
    assert encode_dtc(code).hex().upper() == raw
    assert decode_dtc(bytes.fromhex(raw)) == code


@pytest.mark.parametrize("bad", ["P4000", "X0301", "P030", "P03011", ""])
def test_malformed_dtc_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a DTC"):
        encode_dtc(bad)


def test_service_03_has_the_can_count_byte() -> None:
    reply = respond(b"\x03", snap(stored=("P0301", "P0171")), functional=True)
    assert reply.payload == bytes.fromhex("4302030101 71".replace(" ", ""))


def test_service_03_with_no_codes_is_count_zero() -> None:
    assert respond(b"\x03", snap(), functional=True).payload == b"\x43\x00"


def test_services_07_and_0a_report_pending_and_permanent() -> None:
    memory = snap(pending=("P0420",), permanent=("P0301",))
    assert respond(b"\x07", memory, functional=True).payload == bytes.fromhex("47010420")
    assert respond(b"\x0a", memory, functional=True).payload == bytes.fromhex("4A010301")


def test_service_04_asks_for_a_clear_and_clearing_keeps_permanent_codes() -> None:
    reply = respond(b"\x04", snap(), functional=True)
    assert reply.payload == b"\x44" and reply.clear_dtcs
    before = DtcMemory(
        stored=("P0301",), pending=("P0420",), permanent=("P0301",), mil=True, warmups_since_clear=9
    )
    after = before.cleared(now=100.0, odometer=12.5)
    assert (after.stored, after.pending, after.permanent, after.mil) == ((), (), ("P0301",), False)
    assert (after.cleared_at, after.odometer_at_clear, after.warmups_since_clear) == (100.0, 12.5, 0)
    assert not after.monitors_complete


def test_service_09_vin_is_nodi_then_17_ascii_bytes() -> None:
    payload = respond(b"\x09\x02", snap(), functional=True).payload
    assert payload is not None
    assert payload[:3] == b"\x49\x02\x01" and payload[3:].decode() == VEHICLE.vin


def test_only_the_ecu_holding_the_vin_answers_for_it() -> None:
    assert respond(b"\x09\x02", snap("transmission"), functional=True).payload is None


def test_service_09_calibration_id_cvn_and_ecu_name() -> None:
    engine = VEHICLE.ecu("engine")
    calid = respond(b"\x09\x04", snap(), functional=True).payload
    assert calid == b"\x49\x04\x01" + engine.calibration_ids[0].encode().ljust(16, b"\x00")
    assert respond(b"\x09\x06", snap(), functional=True).payload == b"\x49\x06\x01" + engine.cvns[0]
    name = respond(b"\x09\x0a", snap(), functional=True).payload
    assert name == b"\x49\x0a\x01ECM\x00-EngineControl\x00\x00"


def test_ecu_name_is_20_bytes_acronym_dash_name() -> None:
    raw = ecu_name_bytes("TCM-TransmissionCtl")
    assert len(raw) == 20 and raw[:5] == b"TCM\x00-" and raw[5:] == b"TransmissionCtl"


def test_service_09_bitmap_lists_the_infotypes_served() -> None:
    assert respond(b"\x09\x00", snap(), functional=True).payload == bytes.fromhex("490054400000")
    assert respond(b"\x09\x00", snap("transmission"), functional=True).payload == bytes.fromhex(
        "490014400000"
    )


def test_unsupported_service_gets_7f_11_only_when_addressed_physically() -> None:
    assert respond(b"\x06\x00", snap(), functional=True).payload is None
    assert respond(b"\x06\x00", snap(), functional=False).payload == bytes.fromhex("7F0611")


def test_unsupported_pid_gets_no_answer_even_physically() -> None:
    assert respond(b"\x01\x12", snap(), functional=False).payload is None


def test_wrong_length_dtc_request_physical_gets_7f_13() -> None:
    assert respond(b"\x03\x00", snap(), functional=False).payload == bytes.fromhex("7F0313")
