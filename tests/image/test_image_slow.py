"""The stage applied to a Debian bookworm arm64 root filesystem through the pi-gen stand-in,
checked in the chroot, then booted with qemu-system-aarch64 against a cloud-master on the
host: first boot, enrolment as a pending key, acceptance, ``test.ping``. Slow; root only.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import pytest

from tests.fleet import MasterDaemon, make_master
from tests.image import harness, rig
from tests.image.tools import in_ci
from tests.image.vm import HOST_FROM_GUEST, Guest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

FLEET = "image-test"
MACHINE_ID = re.compile(r"^[0-9a-f]{32}$")


def unavailable(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"the image tests cannot run in CI: {reason}")
    pytest.skip(reason)


def quiet_port() -> int:
    """A free port below Linux's ephemeral range, so nothing takes it while the image builds."""
    while True:
        port = random.randrange(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


@pytest.fixture(scope="session")
def fleet_master(tmp_path_factory: pytest.TempPathFactory) -> tuple[MasterDaemon, str]:
    """A master (not yet started) whose ports and key fingerprint go into the image."""
    root = tmp_path_factory.mktemp("image-master")
    publish, ret = quiet_port(), quiet_port()
    while ret == publish:
        ret = quiet_port()
    master = make_master(root, publish_port=publish, ret_port=ret, log_level="info", timeout=30)
    fingers = json.loads(master.cli("key", "finger", "--out", "json", check=True).stdout)
    return master, fingers["master"]["master.pub"]


@pytest.fixture(scope="session")
def image(fleet_master: tuple[MasterDaemon, str]) -> Iterator[harness.BuiltImage]:
    problems = harness.host_problems(boot=False)
    if problems:
        unavailable("; ".join(problems))
    master, finger = fleet_master
    settings = {"AUTOPI_MASTER": HOST_FROM_GUEST, "AUTOPI_FLEET": FLEET,
                "AUTOPI_MASTER_PORT": str(master.opts["ret_port"]),
                "AUTOPI_PUBLISH_PORT": str(master.opts["publish_port"]),
                "AUTOPI_MASTER_FINGER": finger}
    try:
        built = harness.build_image(settings)
    except harness.HarnessUnavailable as err:
        unavailable(str(err))
    yield built
    # Several GB; AUTOPI_IMAGE_KEEP=1 keeps it to look at (the next run removes it).
    if not os.environ.get("AUTOPI_IMAGE_KEEP"):
        harness.clean_work(built.work)


def chroot_facts(image: harness.BuiltImage, script: str, what: str) -> dict[str, str]:
    out = harness.in_chroot(image.rootfs, script, what=what)
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


AS_AGENT = "setpriv --reuid=autopi --regid=autopi --init-groups"
AGENT = f"{AS_AGENT} /opt/autopi-agent/bin/autopi-agent -c /etc/autopi-agent/agent.yaml"
CHECKS = f"""\
echo "version=$(/opt/autopi-agent/bin/autopi-agent --version)"
echo "enabled=$(systemctl is-enabled autopi-agent.service)"
echo "firstboot_enabled=$(systemctl is-enabled autopi-agent-firstboot.service)"
echo "getty=$(systemctl is-enabled serial-getty@ttyAMA0.service || true)"
echo "groups=$(id -nG autopi)"
echo "shell=$(getent passwd autopi | cut -d: -f7)"
echo "first_user_password=$(getent shadow {rig.FIRST_USER} | cut -d: -f2)"
for path in /etc/autopi-agent /etc/autopi-agent/agent.yaml /var/lib/autopi-agent \\
        /opt/autopi-agent/bin/python3; do
    echo "mode:$path=$(stat -c '%a %U:%G' "$path")"
done
echo "state_files=$(find /var/lib/autopi-agent -mindepth 1 | wc -l)"
echo "machine_id=$(cat /etc/machine-id)"
echo "build_leftovers=$(ls -d /var/lib/autopi-build 2>/dev/null | wc -l)"
echo "venv_writable_by_agent=$({AS_AGENT} test -w /opt/autopi-agent/bin && echo yes || echo no)"
echo "ping=$({AGENT} call test.ping --out json | tr -d ' \\n')"
"""

FIRST_BOOT = f"""\
echo 0123456789abcdef0123456789abcdef > /etc/machine-id
/usr/lib/autopi-agent/firstboot
finger_before=$({AGENT} key finger)
/usr/lib/autopi-agent/firstboot
echo "finger_before=$finger_before"
echo "finger_after=$({AGENT} key finger)"
echo "config_id=$(sed -n 's/^id: //p' /etc/autopi-agent/agent.yaml)"
echo "identity=$(cat /boot/firmware/autopi-identity.yaml)"
for path in /etc/autopi-agent/agent.yaml /var/lib/autopi-agent /var/lib/autopi-agent/pki/minion \\
        /var/lib/autopi-agent/pki/minion/minion.pem /var/lib/autopi-agent/pki/minion/minion.pub; do
    echo "mode:$path=$(stat -c '%a %U:%G' "$path")"
done
echo "stamp=$(ls /var/lib/autopi-agent/.firstboot-done)"
"""


def test_stage_result_in_the_chroot(image: harness.BuiltImage) -> None:
    facts = chroot_facts(image, CHECKS, "checks in the chroot")
    assert facts["version"].startswith("autopi-agent ")
    assert json.loads(facts["ping"]) == {"local": True}
    assert (facts["enabled"], facts["firstboot_enabled"], facts["getty"]) == (
        "enabled", "enabled", "masked")
    assert {"autopi", "dialout", "gpio"} <= set(facts["groups"].split())
    assert facts["shell"] == "/usr/sbin/nologin"
    assert facts["first_user_password"] == "*", "the admin user has no usable password"
    assert facts["mode:/etc/autopi-agent"] == "750 root:autopi"
    assert facts["mode:/etc/autopi-agent/agent.yaml"] == "640 root:autopi"
    assert facts["mode:/var/lib/autopi-agent"] == "700 autopi:autopi"
    assert facts["mode:/opt/autopi-agent/bin/python3"].endswith("root:root")
    assert facts["venv_writable_by_agent"] == "no"
    # Every card unique: no key, no machine id, nothing left from the build.
    assert facts["state_files"] == "0" and facts["machine_id"] == ""
    assert facts["build_leftovers"] == "0"

    boot = image.rootfs / "boot/firmware"
    assert "enable_uart=1\ndtoverlay=disable-bt\ndtparam=watchdog=on" in (
        boot / "config.txt").read_text()
    assert "console=serial0" not in (boot / "cmdline.txt").read_text()
    assert not list((image.rootfs / "etc/ssh").glob("ssh_host_*"))

    facts = chroot_facts(image, FIRST_BOOT, "first boot in the chroot")
    assert facts["config_id"] == "autopi-0123456789abcdef"
    finger = facts["finger_before"].split()[-1]
    assert facts["finger_after"] == facts["finger_before"] == f"autopi-0123456789abcdef: {finger}"
    assert facts["identity"] == f'autopi-0123456789abcdef: "{finger}"'
    assert facts["mode:/etc/autopi-agent/agent.yaml"] == "640 root:autopi"
    assert facts["mode:/var/lib/autopi-agent/pki/minion"] == "700 autopi:autopi"
    assert facts["mode:/var/lib/autopi-agent/pki/minion/minion.pem"] == "400 autopi:autopi"
    assert facts["mode:/var/lib/autopi-agent/pki/minion/minion.pub"] == "644 autopi:autopi"


def poll(check: Callable[[], Any], timeout: float, what: str,
         explain: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{explain()}")


@pytest.fixture
def started(image: harness.BuiltImage, fleet_master: tuple[MasterDaemon, str]
            ) -> Iterator[tuple[Guest, MasterDaemon]]:
    problems = harness.host_problems(boot=True)
    if problems:
        unavailable("; ".join(problems))
    master, _finger = fleet_master
    master.start()
    guest = Guest(image, image.work / "console.log")
    try:
        poll(master.control_ready, 30, "the master's control socket", master.log_tail)
        guest.start()
        yield guest, master
    finally:
        guest.stop()
        master.stop()


def test_first_boot_enrols_and_answers_ping(started: tuple[Guest, MasterDaemon]) -> None:
    guest, master = started

    def explain() -> str:
        return f"{guest.tail()}\n--- master log:\n{master.log_tail()}"

    report = guest.report(timeout=420)
    machine_id = report["machine_id"][0]
    assert MACHINE_ID.match(machine_id), f"systemd made no machine id\n{explain()}"
    minion = f"autopi-{machine_id[:16]}"
    assert report["firstboot"] == ["active"], explain()
    if report["agent_status"] == [""]:
        pytest.fail("the agent never notified systemd (no READY=1, no STATUS=): is "
                    f"autopi_agent.sdnotify called from the daemon?\n{explain()}")
    assert report["agent"] == ["active"], explain()
    assert report["config_id"] == [minion]
    assert report["agent_watchdog"] == ["10s"], "the rig's short watchdog is in force"
    assert report["runtime_watchdog"] == ["15s"]
    assert int(report["hardware_watchdog"][0]) >= 1, "systemd found no hardware watchdog"
    assert sorted(report["mode"]) == sorted([
        "640 root:autopi /etc/autopi-agent/agent.yaml",
        "700 autopi:autopi /var/lib/autopi-agent",
        "700 autopi:autopi /var/lib/autopi-agent/pki/minion",
        "400 autopi:autopi /var/lib/autopi-agent/pki/minion/minion.pem",
        "644 autopi:autopi /var/lib/autopi-agent/pki/minion/minion.pub"])

    poll(lambda: minion in master.keys().get("pending", []), 300,
         f"{minion}'s key to be pending on the master", explain)
    harness.progress(f"key pending after {guest.elapsed():.0f} s")
    pending = json.loads(master.cli("key", "finger", minion, "--out", "json", check=True).stdout)
    assert report["identity"] == [f'{minion}: "{pending["pending"][minion]}"']
    master.cli("key", "accept", minion, "-y", check=True)

    def pong() -> bool:
        _code, data = master.run_json("-t", "10", minion, "test.ping", timeout=60)
        return data.get(minion) is True

    poll(pong, 300, f"{minion} to answer test.ping", explain)
    harness.progress(f"test.ping answered after {guest.elapsed():.0f} s")
    _code, grains = master.run_json(minion, "grains.get", "fleet", timeout=60)
    assert grains == {minion: FLEET}

    # cloud-master.service, as shipped, started in the guest from the image's venv.
    check = guest.master_check(timeout=300)
    assert check["master"] == ["active"], explain()
    assert json.loads(check["master_keys"][0]).get("pending") == [], check
    assert check["master_key_mode"] == ["400 cloud-master"], check

    # The power button: systemd stops the agent with SIGTERM, which it must obey at once.
    assert guest.power_down(timeout=180) == 0
    console = guest.text()
    for unit in ("autopi-agent.service", "cloud-master.service"):
        for trouble in ("Failed with result", "code=killed", "State 'stop-sigterm' timed out",
                        "Watchdog timeout"):
            assert f"{unit}: {trouble}" not in console, f"{unit}: {trouble}\n{explain()}"
    assert "agent.stopped" in console, f"the agent logged no clean stop\n{explain()}"
