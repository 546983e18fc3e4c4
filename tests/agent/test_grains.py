"""Core grains from fake root trees (golden files), the live system, and Salt's own code."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from autopi_agent.grains.core import collect, parse_os_release
from tests.saltvenv import salt_venv

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "grains"
CASES = sorted(path.name for path in FIXTURES.iterdir() if path.is_dir())
GRAINS_ORACLE = Path(__file__).with_name("salt_grains_oracle.py")
# Grains every case must report, beyond the Pi-only ones.
REQUIRED = {"id", "os", "os_family", "osrelease", "oscodename", "osfullname", "osmajorrelease",
            "kernel", "kernelrelease", "kernelversion", "cpuarch", "cpu_model", "num_cpus",
            "mem_total", "host", "fqdn", "nodename", "ip4_interfaces", "ip6_interfaces",
            "ipv4", "ipv6", "machine_id", "agent_version", "saltversion", "saltversioninfo"}


def expected(case: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / case / "expected.json").read_text())
    return data


def test_the_fixture_cases_are_there() -> None:
    assert {"rpi-zero2w-bookworm-arm64", "debian12-x86_64"} <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_collect_from_fixture_tree(case: str) -> None:
    want = expected(case)
    got = collect(want["id"], root=FIXTURES / case / "root")
    assert REQUIRED <= set(want)
    assert got == want
    json.dumps(got)  # grains travel as msgpack/JSON: plain types only


def test_raspberry_pi_grains() -> None:
    pi = collect("car-0001", root=FIXTURES / "rpi-zero2w-bookworm-arm64" / "root")
    assert pi["rpi_model"] == "Raspberry Pi Zero 2 W Rev 1.0"  # NUL terminator gone
    assert pi["rpi_serial"] == "00000000a1b2c3d4"
    server = collect("srv1", root=FIXTURES / "debian12-x86_64" / "root")
    assert not {"rpi_model", "rpi_serial", "rpi_revision"} & set(server)


def test_config_grains_are_merged_last() -> None:
    extra = {"os": "AutoPiOS", "vehicle": {"vin": "WVWZZZ1JZXW000001"}}
    grains = collect("car-0001", root=FIXTURES / "rpi-zero2w-bookworm-arm64" / "root",
                     extra=extra)
    assert grains["os"] == "AutoPiOS" and grains["vehicle"] == extra["vehicle"]
    assert grains["os_family"] == "Debian"


def test_empty_root_gives_defaults_not_errors(tmp_path: Path) -> None:
    grains = collect("bare", root=tmp_path)
    assert grains["id"] == "bare"
    assert (grains["num_cpus"], grains["cpu_model"], grains["mem_total"]) == (0, "Unknown", 0)
    assert grains["kernel"] == "Linux"
    assert grains["ipv4"] == [] and grains["ip4_interfaces"] == {}
    assert "os" not in grains and "machine_id" not in grains and "rpi_model" not in grains
    assert grains["saltversion"] == "3008.4" and grains["saltversioninfo"] == [3008, 4]


def test_garbage_files_are_survived(tmp_path: Path) -> None:
    (tmp_path / "proc/net").mkdir(parents=True)
    (tmp_path / "proc/device-tree").mkdir()
    (tmp_path / "proc/cpuinfo").write_bytes(b"\xff\xfe processor : 0\n:::\n")
    (tmp_path / "proc/meminfo").write_text("MemTotal: lots kB\n")
    (tmp_path / "proc/net/if_inet6").write_text("zz 01 80 10 80 lo\nshort line\n")
    (tmp_path / "proc/device-tree/model").write_bytes(b"Some Board\x00")
    (tmp_path / "uname.json").write_text("{not json")
    (tmp_path / "ip4_interfaces.json").write_text('{"eth0": ["300.1.1.1"]}')
    grains = collect("junk", root=tmp_path)
    assert grains["mem_total"] == 0 and grains["ipv6"] == [] and grains["ipv4"] == []
    assert "rpi_model" not in grains


def test_parse_os_release_handles_quoting() -> None:
    text = 'NAME="Debian GNU/Linux"\nID=debian\n# comment\nPRETTY_NAME=\'It\\\'s\'\nBAD\n'
    fields = parse_os_release(text)
    assert fields["NAME"] == "Debian GNU/Linux" and fields["ID"] == "debian"
    assert "BAD" not in fields and "# comment" not in fields


def test_live_system() -> None:
    grains = collect("live-1")
    uname = os.uname()
    assert grains["kernel"] == uname.sysname
    assert grains["kernelrelease"] == uname.release
    assert grains["cpuarch"] == uname.machine
    assert grains["nodename"] == uname.nodename
    assert grains["localhost"] == socket.gethostname()
    assert grains["num_cpus"] >= 1 and grains["mem_total"] > 0
    names = {name for _, name in socket.if_nameindex()}
    assert set(grains["ip4_interfaces"]) == names
    if "lo" in names:
        assert "127.0.0.1" in grains["ipv4"]


@pytest.mark.salt
@pytest.mark.parametrize("case", CASES)
def test_os_cpu_and_memory_grains_agree_with_salt(case: str) -> None:
    proc = subprocess.run([str(salt_venv() / "bin" / "python"), str(GRAINS_ORACLE),
                           str(FIXTURES / case / "root")], capture_output=True, text=True,
                          timeout=90, check=True)
    salt_says = json.loads(proc.stdout)
    ours = collect("x", root=FIXTURES / case / "root")
    if salt_says["cpu_model"] == "Unknown":
        # Salt finds no CPU model in a Pi's arm64 cpuinfo; we report the board's line.
        assert ours["cpu_model"] == ours["rpi_model"]
        del salt_says["cpu_model"]
    assert {key: ours.get(key) for key in salt_says} == salt_says


@pytest.mark.salt
def test_live_grains_agree_with_salt_call() -> None:
    keys = ["os", "os_family", "osrelease", "oscodename", "osfullname", "osmajorrelease",
            "osfinger", "kernel", "kernelrelease", "kernelversion", "cpuarch", "cpu_model",
            "num_cpus", "mem_total", "host", "fqdn", "nodename", "domain", "ip4_interfaces",
            "ip6_interfaces", "ipv4", "ipv6", "machine_id", "saltversion", "saltversioninfo"]
    with tempfile.TemporaryDirectory(prefix="sg-") as base:
        conf = Path(base) / "minion"
        conf.write_text(f"id: live-1\nfile_client: local\nroot_dir: {base}\n"
                        f"pki_dir: {base}/pki\ncachedir: {base}/cache\n"
                        f"log_file: {base}/minion.log\n")
        proc = subprocess.run([str(salt_venv() / "bin" / "salt-call"), "-c", base, "--local",
                               "--out=json", "grains.item", *keys],
                              capture_output=True, text=True, timeout=90, check=True)
    salt_says = json.loads(proc.stdout)["local"]
    ours = collect("live-1")
    assert {key: ours.get(key) for key in keys} == salt_says
