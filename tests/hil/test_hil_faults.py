"""Every fault, switched on and off while the car runs, seen from the adapter's side."""

from __future__ import annotations

import os
import socket
import termios
import time
from collections.abc import Callable

import pytest
import serial

from hil import Elm327, SimulatedCar, execute, parse_fault
from tests.hil.helpers import CarFactory, ElmClient

HEADERS_ON = ("ATE0", "ATH1", "ATSP6")


def ask(elm: Elm327, line: str) -> list[str]:
    body = elm.handle(line.encode()).body.decode("ascii", "replace")
    return [x for x in body[:-1].split("\r") if x]


@pytest.fixture
def car(make_car: CarFactory) -> SimulatedCar:
    return make_car(scenario="idle", adapter=False)


@pytest.fixture
def elm(car: SimulatedCar) -> Elm327:
    adapter = car.open_adapter()
    for line in HEADERS_ON:
        adapter.handle(line.encode())
    return adapter


def fault(car: SimulatedCar, line: str) -> None:
    reply = execute(car, line)
    assert reply["ok"], reply


def test_silent_ecu_answers_nothing_until_switched_off(car: SimulatedCar, elm: Elm327) -> None:
    fault(car, "fault silent-ecu on ecu=engine")
    assert ask(elm, "010C") == ["NO DATA"]
    assert ask(elm, "010D") == ["7E9 03 41 0D 00"]  # the transmission still answers
    fault(car, "fault silent-ecu off")
    assert ask(elm, "010C") == ["7E8 04 41 0C 0C 30"]


def test_silent_ecu_can_be_limited_to_one_service(car: SimulatedCar, elm: Elm327) -> None:
    fault(car, "fault silent-ecu on service=09")
    assert ask(elm, "0902") == ["NO DATA"]
    assert ask(elm, "010C") == ["7E8 04 41 0C 0C 30"]


def test_slow_ecu_misses_the_adapter_timeout_unless_it_is_raised(car: SimulatedCar, elm: Elm327) -> None:
    fault(car, "fault slow-ecu on ecu=engine delay=0.4")
    assert ask(elm, "ATSH7E0") == ["OK"]
    assert ask(elm, "010C") == ["NO DATA"]  # AT ST default: 200 ms
    time.sleep(0.4)  # let the late answer go by; the adapter discards it before the next request
    assert ask(elm, "ATAT0") == ["OK"] and ask(elm, "ATSTFF") == ["OK"]  # 1.04 s, not adaptive
    assert ask(elm, "010C") == ["7E8 04 41 0C 0C 30"]


def test_negative_response_is_7f_and_refuses_the_clear(car: SimulatedCar, elm: Elm327) -> None:
    car.set_scenario("dtc-present")
    car.inject(parse_fault("negative-response", {"ecu": "engine", "nrc": "22"}))
    assert ask(elm, "ATSH7E0") == ["OK"]
    assert ask(elm, "010C") == ["7E8 03 7F 01 22"]
    assert ask(elm, "04") == ["7E8 03 7F 04 22"]
    car.clear_fault("negative-response")
    assert ask(elm, "03") == ["7E8 06 43 02 03 01 01 71"]  # nothing was cleared


def test_response_pending_then_the_answer(car: SimulatedCar, elm: Elm327) -> None:
    fault(car, "fault negative-response on ecu=engine nrc=78 delay=0.3")
    assert ask(elm, "ATSH7E0") == ["OK"]
    # the adapter keeps listening after 7F xx 78 although 0.3 s exceeds its 200 ms timeout
    assert ask(elm, "010C") == ["7E8 03 7F 01 78", "7E8 04 41 0C 0C 30"]


def test_truncated_frame_announces_more_than_it_carries(car: SimulatedCar, elm: Elm327) -> None:
    fault(car, "fault truncated-frame on ecu=engine")
    assert ask(elm, "ATSH7E0") == ["OK"]
    assert ask(elm, "010C") == ["7E8 04 41 0C"]
    assert ask(elm, "0902") == ["7E8 10 14 49 02"]  # a first frame, and nothing after it


def test_bus_off_gives_can_error_and_silences_the_ecus(car: SimulatedCar, elm: Elm327) -> None:
    fault(car, "fault bus-off on")
    assert ask(elm, "010C") == ["CAN ERROR"]
    auto = car.open_adapter()
    assert ask(auto, "0100") == ["SEARCHING...", "UNABLE TO CONNECT"]
    fault(car, "fault bus-off off")
    assert ask(elm, "ATSH7E0") == ["OK"] and ask(elm, "010C") == ["7E8 04 41 0C 0C 30"]


def test_power_commands_drive_atrv_and_the_ignition(car: SimulatedCar, elm: Elm327) -> None:
    fault(car, "power voltage 11.8")
    assert ask(elm, "ATRV") == ["11.8V"]
    fault(car, "power ignition off")
    assert ask(elm, "ATIGN") == ["OFF"]
    assert ask(elm, "010C") == ["CAN ERROR"]  # every ECU asleep: nobody acknowledges
    fault(car, "power release")
    assert ask(elm, "ATRV") == ["14.1V"] and ask(elm, "ATIGN") == ["ON"]


def test_switching_scenario_at_run_time(car: SimulatedCar, elm: Elm327) -> None:
    assert ask(elm, "ATSH7E0") == ["OK"]
    assert ask(elm, "03") == ["7E8 02 43 00"]
    fault(car, "scenario dtc-present")
    assert ask(elm, "03") == ["7E8 06 43 02 03 01 01 71"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("fault warp-core on", "known faults: silent-ecu"),
        ("fault slow-ecu on delay=soon", "expected a number"),
        ("fault silent-ecu on ecu=radio", "engine, transmission"),
        ("fault garbage on ecu=engine", "takes ['count']"),
        ("fault silent-ecu maybe", "usage"),
        ("scenario nowhere", "no scenario"),
        ("power voltage 99", "outside"),
        ("teleport", "unknown command"),
    ],
)
def test_bad_control_commands_say_why(car: SimulatedCar, line: str, message: str) -> None:
    reply = execute(car, line)
    assert reply["ok"] is False and message in str(reply["error"])


# ---------------------------------------------------------------- faults on the serial side


def test_garbage_precedes_every_reply(make_car: CarFactory, elm_client: Callable[[str], ElmClient]) -> None:
    car = make_car(scenario="idle", tcp_port=None)
    client = elm_client(car.pty_path)
    assert client.lines("ATE0")[-1] == "OK"
    car.inject(parse_fault("garbage", {"count": "24"}))
    raw = client.raw("ATI")
    assert raw.endswith(b"ELM327 v1.5\r\r>")
    junk = raw[: -len(b"ELM327 v1.5\r\r>")]
    assert len(junk) == 24 and b">" not in junk
    car.clear_fault("garbage")
    assert client.raw("ATI") == b"ELM327 v1.5\r\r>"


def test_pty_unplug_breaks_the_open_port_and_replug_brings_a_fresh_adapter(
    make_car: CarFactory, elm_client: Callable[[str], ElmClient]
) -> None:
    car = make_car(scenario="idle", tcp_port=None)
    client = elm_client(car.pty_path)
    assert client.lines("ATE0") == ["ATE0", "OK"]
    car.inject(parse_fault("adapter-unplugged", {}))
    assert not os.path.exists(car.pty_path) and car.pty_device is None
    with pytest.raises((serial.SerialException, OSError, termios.error)):
        client.raw("ATI")
    car.clear_fault("adapter-unplugged")
    assert os.path.exists(car.pty_path)
    again = elm_client(car.pty_path)
    assert again.lines("ATI") == ["ATI", "ELM327 v1.5"]  # echo is back on: the chip was power-cycled


def _until_prompt(sock: socket.socket) -> bytes:
    data = b""
    deadline = time.monotonic() + 5
    while not data.endswith(b">") and time.monotonic() < deadline:
        data += sock.recv(100)
    return data


def test_tcp_unplug_closes_the_client_and_refuses_new_ones(make_car: CarFactory) -> None:
    car = make_car(scenario="idle", pty=False)
    port = car.tcp_port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"ATI\r")
        assert _until_prompt(sock) == b"ATI\rELM327 v1.5\r\r>"
        car.inject(parse_fault("adapter-unplugged", {}))
        assert sock.recv(100) == b""  # closed by the adapter
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    car.clear_fault("adapter-unplugged")
    assert car.tcp_port == port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"ATE0\r")
        assert _until_prompt(sock) == b"ATE0\rOK\r\r>"  # a fresh chip echoes again
