"""The systemd units: ``systemd-analyze verify`` and ``security`` offline, sysusers/tmpfiles."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.image.tools import need_tool

REPO = Path(__file__).resolve().parents[2]
UNITS = sorted((REPO / "systemd").glob("*.service"))
HOST_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
# systemd-analyze security: 0 is locked down, 10 is wide open. The first-boot unit is root
# and writes /etc, the others run unprivileged.
MAX_EXPOSURE = {"autopi-agent.service": 2.0, "cloud-master.service": 2.0,
                "autopi-agent-firstboot.service": 3.0}


def directives(unit: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, repeated keys kept, in order."""
    found, section = [], ""
    for line in unit.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.append((section, key, value))
    return found


def values(unit: Path, key: str) -> list[str]:
    return [v for _s, k, v in directives(unit) if k == key]


def verify_root(tmp_path: Path) -> Path:
    """A root with the host's unit directory and a stub for each unit's executables."""
    root = tmp_path / "root"
    source = next((d for d in HOST_UNIT_DIRS if d.is_dir()), None)
    if source is None:
        pytest.skip("no systemd unit directory on this host")
    shutil.copytree(source, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
        for command in values(unit, "ExecStart"):
            stub = root / command.split()[0].lstrip("-@:+!").lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
    return root


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_verify_is_silent(unit: Path, tmp_path: Path) -> None:
    analyze = need_tool("systemd-analyze", "systemd")
    root = verify_root(tmp_path)
    proc = subprocess.run([analyze, "verify", f"--root={root}",
                           str(root / "etc/systemd/system" / unit.name)],
                          capture_output=True, text=True)
    # Unknown keys and bad values are only warnings: any output is a failure here.
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stderr


def test_verify_catches_what_it_should(tmp_path: Path) -> None:
    analyze = need_tool("systemd-analyze", "systemd")
    root = verify_root(tmp_path)
    broken = root / "etc/systemd/system/broken.service"
    text = (REPO / "systemd/autopi-agent.service").read_text()
    broken.write_text(text.replace("ProtectSystem=", "ProtectSytem=")
                      .replace("/opt/autopi-agent/bin/autopi-agent", "/opt/missing/agent"))
    proc = subprocess.run([analyze, "verify", f"--root={root}", str(broken)],
                          capture_output=True, text=True)
    assert "Unknown key" in proc.stderr and "/opt/missing/agent" in proc.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_security_exposure_is_low(unit: Path, tmp_path: Path) -> None:
    analyze = need_tool("systemd-analyze", "systemd")
    root = verify_root(tmp_path)
    proc = subprocess.run([analyze, "security", "--offline=yes", f"--root={root}",
                           str(root / "etc/systemd/system" / unit.name)],
                          capture_output=True, text=True)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    if match is None and "--offline" in proc.stderr:
        pytest.skip("systemd-analyze security --offline needs systemd 250 or later")
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE[unit.name], proc.stdout


def test_agent_unit_is_a_notifying_sandboxed_service() -> None:
    unit = REPO / "systemd/autopi-agent.service"
    one = {k: v for _s, k, v in directives(unit)}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["Restart"] == "always" and int(one["WatchdogSec"]) >= 10
    assert one["User"] == "autopi" and one["ProtectSystem"] == "strict"
    assert one["ReadWritePaths"] == "/var/lib/autopi-agent"
    assert one["PrivateTmp"] == "yes" and one["NoNewPrivileges"] == "yes"
    assert one["CapabilityBoundingSet"] == "" and one["DevicePolicy"] == "closed"
    allowed = values(unit, "DeviceAllow")
    assert "char-ttyAMA rw" in allowed and "char-gpiochip rw" in allowed
    assert one["ExecStart"].split()[0] == "/opt/autopi-agent/bin/autopi-agent"
    assert "autopi-agent-firstboot.service" in values(unit, "Requires")[0]
    assert values(unit, "WantedBy") == ["multi-user.target"]


def test_firstboot_unit_runs_once_before_the_agent() -> None:
    unit = REPO / "systemd/autopi-agent-firstboot.service"
    one = {k: v for _s, k, v in directives(unit)}
    assert one["Type"] == "oneshot" and one["RemainAfterExit"] == "yes"
    assert one["ConditionPathExists"] == "!/var/lib/autopi-agent/.firstboot-done"
    assert one["Before"] == "autopi-agent.service"
    assert one["ExecStart"] == "/usr/lib/autopi-agent/firstboot"


def test_master_unit_runs_unprivileged() -> None:
    one = {k: v for _s, k, v in directives(REPO / "systemd/cloud-master.service")}
    assert one["User"] == "cloud-master" and one["CapabilityBoundingSet"] == ""
    assert one["ProtectSystem"] == "strict" and one["PrivateDevices"] == "yes"
    assert one["ReadWritePaths"] == "/var/lib/cloud-master"


def debian_like_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\ndialout:x:20:\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc/gshadow").write_text("root:*::\ndialout:*::\n")
    return root


def test_sysusers_makes_the_agent_user_in_dialout_and_gpio(tmp_path: Path) -> None:
    sysusers = need_tool("systemd-sysusers", "systemd")
    root = debian_like_root(tmp_path)
    proc = subprocess.run([sysusers, f"--root={root}", str(REPO / "systemd/autopi-agent.sysusers")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    users = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    groups = {line.split(":")[0]: line.split(":") for line in (root / "etc/group").read_text().splitlines()}
    autopi = users["autopi"]
    assert 0 < int(autopi[2]) < 1000, "a system user"
    assert autopi[5:] == ["/var/lib/autopi-agent", "/usr/sbin/nologin"]
    assert "autopi" in groups["dialout"][3].split(",")
    assert "autopi" in groups["gpio"][3].split(",") and int(groups["gpio"][2]) < 1000


def test_tmpfiles_makes_a_private_state_directory(tmp_path: Path) -> None:
    sysusers = need_tool("systemd-sysusers", "systemd")
    tmpfiles = need_tool("systemd-tmpfiles", "systemd")
    root = debian_like_root(tmp_path)
    subprocess.run([sysusers, f"--root={root}", str(REPO / "systemd/autopi-agent.sysusers")],
                   check=True, capture_output=True)
    proc = subprocess.run([tmpfiles, f"--root={root}", "--create",
                           str(REPO / "systemd/autopi-agent.tmpfiles")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    state = (root / "var/lib/autopi-agent").stat()
    uid = int(next(line.split(":")[2] for line in (root / "etc/passwd").read_text().splitlines()
                   if line.startswith("autopi:")))
    assert stat.S_IMODE(state.st_mode) == 0o700 and state.st_uid == uid
