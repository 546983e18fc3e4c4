"""ISO 15765-2/-4 on a virtual bus: addressing, multi-frame answers, flow control both ways."""

from __future__ import annotations

import time
from collections.abc import Iterator

import can
import isotp
import pytest

from hil import SimulatedCar, open_bus
from tests.hil.helpers import CarFactory


@pytest.fixture
def car(make_car: CarFactory) -> SimulatedCar:
    return make_car(scenario="idle", adapter=False)


@pytest.fixture
def tester(car: SimulatedCar) -> Iterator[can.BusABC]:
    bus = open_bus(car.bus_config)
    yield bus
    bus.shutdown()


def send(bus: can.BusABC, arbitration_id: int, data: bytes) -> None:
    bus.send(can.Message(arbitration_id=arbitration_id, data=data.ljust(8, b"\x00"), is_extended_id=False))


def gather(bus: can.BusABC, quiet: float = 0.25) -> list[can.Message]:
    """Frames until the bus has been quiet for `quiet` seconds."""
    frames = []
    while (msg := bus.recv(quiet)) is not None:
        frames.append(msg)
    return frames


def test_functional_request_is_answered_by_every_ecu(tester: can.BusABC) -> None:
    send(tester, 0x7DF, bytes([0x02, 0x01, 0x00]))
    senders = sorted(m.arbitration_id for m in gather(tester))
    assert senders == [0x7E8, 0x7E9]


def test_physical_request_is_answered_by_that_ecu_only(tester: can.BusABC) -> None:
    send(tester, 0x7E1, bytes([0x02, 0x01, 0x00]))
    frames = gather(tester)
    assert [(m.arbitration_id, bytes(m.data[:6])) for m in frames] == [(0x7E9, bytes.fromhex("064100800800"))]
    send(tester, 0x7E2, bytes([0x02, 0x01, 0x00]))  # nobody lives at 0x7E2
    assert gather(tester) == []


def test_vin_over_can_isotp_with_block_size_1(car: SimulatedCar, tester: can.BusABC) -> None:
    """A tester asking for one consecutive frame per flow control gets the VIN in order."""
    spy = open_bus(car.bus_config)
    stack = isotp.CanStack(
        tester,
        address=isotp.Address(isotp.AddressingMode.Normal_11bits, txid=0x7E0, rxid=0x7E8),
        params={"blocksize": 1, "stmin": 5, "tx_padding": 0x00},
    )
    stack.start()
    try:
        stack.send(b"\x09\x02")
        payload = stack.recv(block=True, timeout=3)
    finally:
        stack.stop()
    frames = [(m.arbitration_id, m.data[0] >> 4) for m in gather(spy, 0.1)]
    spy.shutdown()
    assert payload is not None and bytes(payload) == b"\x49\x02\x01" + car.vehicle.vin.encode()
    # request, first frame, then strictly one flow control before each consecutive frame
    assert frames == [(0x7E0, 0), (0x7E8, 1), (0x7E0, 3), (0x7E8, 2), (0x7E0, 3), (0x7E8, 2)]


def test_ecu_holds_consecutive_frames_until_flow_control(tester: can.BusABC) -> None:
    send(tester, 0x7DF, bytes([0x02, 0x09, 0x02]))
    first = tester.recv(1.0)
    assert first is not None and first.arbitration_id == 0x7E8 and bytes(first.data[:2]) == b"\x10\x14"
    time.sleep(0.3)
    assert gather(tester, 0.05) == []  # no consecutive frame without a flow control
    send(tester, 0x7E0, bytes([0x30, 0x00, 0x00]))  # to the ECU's physical id, as ISO 15765-4 requires
    rest = gather(tester)
    assert [m.data[0] for m in rest] == [0x21, 0x22]
    vin = bytes(first.data[5:]) + bytes(rest[0].data[1:]) + bytes(rest[1].data[1:])
    assert vin.decode() == "WAUZZZ8V7JA031575"


def test_ecu_sends_flow_control_for_a_multi_frame_request(tester: can.BusABC) -> None:
    # seven PIDs need 8 bytes, so a first frame; J1979 allows six, so no answer follows
    send(tester, 0x7E0, bytes([0x10, 0x08, 0x01, 0x0C, 0x0D, 0x05, 0x0F, 0x11]))
    flow = tester.recv(1.0)
    assert flow is not None and flow.arbitration_id == 0x7E8 and flow.data[0] == 0x30
    send(tester, 0x7E0, bytes([0x21, 0x2F, 0x46]))
    assert gather(tester) == []


def test_padding_is_iso_15765_4_eight_bytes(tester: can.BusABC) -> None:
    send(tester, 0x7E0, bytes([0x02, 0x01, 0x0D]))
    (answer,) = gather(tester)
    assert answer.dlc == 8 and bytes(answer.data) == bytes.fromhex("03410D00AAAAAAAA")
