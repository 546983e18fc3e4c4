"""ECUs in one process, the adapter in another, over python-can's udp_multicast bus (pinned to 127.0.0.1).

python-can joins the multicast group on the default interface, so its traffic would reach
the LAN; `hil.canbus.pin_to_loopback` moves an IPv4 group onto 127.0.0.1 (IPv6 multicast
cannot use `lo` on Linux). If even that is impossible here, the test is skipped with the reason.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import obd
import pytest
from obd import OBDStatus

from hil import BusConfig, BusError, open_bus, send_command
from tests.hil.helpers import CarFactory

REPO = Path(__file__).resolve().parents[2]
logging.getLogger("obd").setLevel(logging.CRITICAL)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def udp_bus() -> BusConfig:
    config = BusConfig("udp_multicast", f"239.74.163.{random.randint(10, 250)}", (("port", free_udp_port()),))
    try:
        open_bus(config).shutdown()
    except BusError as err:
        pytest.skip(f"udp_multicast is not usable on this machine: {err}")
    return config


@pytest.fixture
def ecus_in_subprocess(udp_bus: BusConfig, tmp_path: Path) -> Iterator[dict[str, object]]:
    info = tmp_path / "ecus.json"
    port = dict(udp_bus.options)["port"]
    process = subprocess.Popen(
        [sys.executable, "-m", "hil", "run", "--no-adapter", "--interface", "udp_multicast"]
        + ["--channel", str(udp_bus.channel), "--bus-option", f"port={port}", "--scenario", "dtc-present"]
        + ["--info-file", str(info)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not info.exists():
            assert process.poll() is None and time.monotonic() < deadline, process.communicate(timeout=5)
            time.sleep(0.05)
        yield json.loads(info.read_text())
    finally:
        process.terminate()
        process.communicate(timeout=15)


def test_python_obd_reads_ecus_running_in_another_process(
    udp_bus: BusConfig, ecus_in_subprocess: dict[str, object], make_car: CarFactory
) -> None:
    adapter = make_car(scenario="dtc-present", bus=udp_bus, ecus=False, tcp_port=None)
    conn = obd.OBD(portstr=adapter.pty_path, baudrate=38400, protocol="6", fast=False, timeout=5)
    try:
        assert conn.status() == OBDStatus.CAR_CONNECTED
        assert bytes(conn.query(obd.commands.VIN).value).decode() == adapter.vehicle.vin
        assert sorted(code for code, _ in conn.query(obd.commands.GET_DTC).value) == [
            "P0171",
            "P0301",
            "P0741",
        ]
        assert abs(conn.query(obd.commands.RPM).value.magnitude - 780) < 20
        reply = send_command(str(ecus_in_subprocess["control"]), "fault silent-ecu on")
        assert reply["ok"]
        assert conn.query(obd.commands.RPM).is_null()
    finally:
        conn.close()
