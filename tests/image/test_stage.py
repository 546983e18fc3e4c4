"""The pi-gen stage against pi-gen's rules, shellcheck, and its host-side scripts run for real."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.image.tools import need_tool

REPO = Path(__file__).resolve().parents[2]
STAGE = REPO / "image" / "pi-gen-stage"
SUB_STAGE = re.compile(r"^\d\d-[a-z0-9-]+$")
# What pi-gen's run_sub_stage looks at; anything else in a sub-stage is silently ignored.
SUB_STAGE_ENTRY = re.compile(r"^(\d\d)-(debconf|packages|packages-nr|patches|run\.sh|run-chroot\.sh)$")
STAGE_MARKERS = {"prerun.sh", "EXPORT_IMAGE", "EXPORT_NOOBS", "SKIP", "SKIP_IMAGES"}
# Put into files/ by image/assemble-stage.sh rather than kept in the stage's source.
ASSEMBLED = {"wheels", "systemd", "README.md"}
DEBIAN_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


def sub_stages() -> list[Path]:
    return sorted(p for p in STAGE.iterdir() if p.is_dir())


def stage_scripts() -> list[Path]:
    scripts = [STAGE / "prerun.sh", STAGE / "00-agent" / "files" / "firstboot"]
    for sub in sub_stages():
        scripts += sorted(sub.glob("[0-9][0-9]-run*.sh"))
    return scripts


def executable(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXUSR)


def test_prerun_copies_the_previous_rootfs_only_when_there_is_none() -> None:
    prerun = STAGE / "prerun.sh"
    assert executable(prerun), "pi-gen runs prerun.sh only if it is executable"
    text = prerun.read_text()
    assert text.startswith("#!/bin/bash -e\n")
    assert re.search(r'if \[ ! -d "\$\{ROOTFS_DIR\}" \]; then\s+copy_previous\s+fi', text)


@pytest.mark.parametrize(("use_qemu", "suffix"), [("0", "-autopi"), ("1", "-autopi-qemu")])
def test_export_image_sets_the_suffix_when_sourced(use_qemu: str, suffix: str) -> None:
    out = subprocess.run(["bash", "-c", 'source "$1" && printf %s "$IMG_SUFFIX"', "-",
                          str(STAGE / "EXPORT_IMAGE")], env={"USE_QEMU": use_qemu, "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True)
    assert out.stdout == suffix


def test_stage_holds_only_what_pi_gen_reads() -> None:
    for entry in STAGE.iterdir():
        if entry.is_dir():
            assert SUB_STAGE.match(entry.name), f"{entry.name}: sub-stages are named NN-name"
        else:
            assert entry.name in STAGE_MARKERS, f"{entry.name}: pi-gen ignores this file"
    assert [p.name for p in sub_stages()] == ["00-agent", "01-system"]


@pytest.mark.parametrize("sub", sub_stages(), ids=lambda p: p.name)
def test_sub_stage_entries_follow_pi_gen_naming(sub: Path) -> None:
    for entry in sub.iterdir():
        if entry.name in ("files", "SKIP"):
            continue
        match = SUB_STAGE_ENTRY.match(entry.name)
        assert match, f"{sub.name}/{entry.name}: not a name pi-gen runs (would be ignored)"
        kind = match.group(2)
        if kind.startswith("run"):
            # run.sh is skipped, silently on bookworm, unless executable; the README asks
            # the same of run-chroot.sh.
            assert executable(entry), f"{sub.name}/{entry.name} must be executable"
            assert entry.read_text().startswith("#!/bin/bash -e\n")
        if kind.startswith("packages"):
            words = [w for line in entry.read_text().splitlines()
                     for w in line.split("#", 1)[0].split()]
            assert words and all(DEBIAN_PACKAGE.match(w) for w in words), words


@pytest.mark.parametrize("script", [p for p in stage_scripts() if p.name.endswith(".sh")],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_scripts_use_files_that_exist_and_avoid_tmp(script: Path) -> None:
    text = script.read_text()
    assert "${ROOTFS_DIR}/tmp" not in text, "on_chroot hides ${ROOTFS_DIR}/tmp under a tmpfs"
    for name in re.findall(r"\bfiles/([A-Za-z0-9_.-]+)", text):
        assert name in ASSEMBLED or (script.parent / "files" / name).exists(), name
    for unit in re.findall(r"files/systemd/([A-Za-z0-9_.@-]+)", text):
        source = unit.replace(".conf", "")
        assert (REPO / "systemd" / source).exists(), unit


def test_shellcheck_is_clean() -> None:
    shellcheck = need_tool("shellcheck", "shellcheck")
    scripts = [*stage_scripts(), *sorted((REPO / "image").glob("*.sh")),
               REPO / "tests" / "image" / "pigen_driver.sh"]
    proc = subprocess.run([shellcheck, "-x", "-s", "bash", *map(str, scripts),
                           str(STAGE / "EXPORT_IMAGE")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the host-side run.sh scripts, run against a fake ROOTFS_DIR ------------------------


def fake_rootfs(root: Path) -> Path:
    for directory in ("boot/firmware", "usr/lib/systemd/system", "etc/default", "etc/systemd"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "boot/firmware/config.txt").write_text("dtparam=audio=on\n\n[cm4]\notg_mode=1\n")
    (root / "boot/firmware/cmdline.txt").write_text(
        "console=serial0,115200 console=tty1 root=PARTUUID=abc-02 rootfstype=ext4 rootwait\n")
    return root


def run_script(script: Path, rootfs: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {"PATH": os.environ["PATH"], "ROOTFS_DIR": str(rootfs), **env}
    return subprocess.run([str(script)], cwd=cwd, env=full_env, capture_output=True, text=True)


def test_system_run_sets_up_the_uart_and_is_idempotent(tmp_path: Path) -> None:
    rootfs = fake_rootfs(tmp_path / "rootfs")
    sub = STAGE / "01-system"
    for _ in range(2):
        proc = run_script(sub / "01-run.sh", rootfs, sub)
        assert proc.returncode == 0, proc.stderr
    config = (rootfs / "boot/firmware/config.txt").read_text()
    assert config.startswith("dtparam=audio=on\n\n[cm4]\notg_mode=1\n")
    block = config.split("# BEGIN autopi-agent\n", 1)[1]
    assert config.count("# BEGIN autopi-agent") == 1
    assert "[all]\nenable_uart=1\ndtoverlay=disable-bt\ndtparam=watchdog=on\n# END" in block
    cmdline = (rootfs / "boot/firmware/cmdline.txt").read_text()
    assert cmdline == "console=tty1 root=PARTUUID=abc-02 rootfstype=ext4 rootwait\n"
    assert "RuntimeWatchdogSec=15" in (
        rootfs / "etc/systemd/system.conf.d/60-autopi-watchdog.conf").read_text()
    assert "RuntimeMaxUse=" in (rootfs / "etc/systemd/journald.conf.d/60-autopi.conf").read_text()
    sshd = (rootfs / "etc/ssh/sshd_config.d/60-autopi.conf").read_text()
    assert "PasswordAuthentication no" in sshd and "PermitRootLogin no" in sshd


def test_system_run_takes_another_overlay_or_none(tmp_path: Path) -> None:
    rootfs = fake_rootfs(tmp_path / "rootfs")
    sub = STAGE / "01-system"
    assert run_script(sub / "01-run.sh", rootfs, sub, AUTOPI_UART_OVERLAY="none").returncode == 0
    assert "dtoverlay" not in (rootfs / "boot/firmware/config.txt").read_text()
    bad = run_script(sub / "01-run.sh", rootfs, sub, AUTOPI_UART_OVERLAY="x; reboot")
    assert bad.returncode == 1 and "not an overlay name" in bad.stderr


def test_system_run_refuses_a_rootfs_without_boot_files(tmp_path: Path) -> None:
    sub = STAGE / "01-system"
    proc = run_script(sub / "01-run.sh", tmp_path, sub)
    assert proc.returncode == 1 and "run after pi-gen's stage1" in proc.stderr


def assembled_agent_sub_stage(tmp_path: Path) -> Path:
    """00-agent as assemble-stage.sh leaves it, with a stand-in wheel (no download)."""
    sub = tmp_path / "00-agent"
    shutil.copytree(STAGE / "00-agent", sub)
    (sub / "files/systemd").mkdir()
    for name in ("autopi-agent.service", "autopi-agent-firstboot.service",
                 "autopi-agent.sysusers", "autopi-agent.tmpfiles"):
        shutil.copy(REPO / "systemd" / name, sub / "files/systemd" / name)
    shutil.copy(REPO / "image/README.md", sub / "files/README.md")
    (sub / "files/wheels").mkdir()
    shutil.copy(sub / "files/requirements.lock", sub / "files/wheels/requirements.lock")
    (sub / "files/wheels/autopi_telematics-0.1.0-py3-none-any.whl").write_bytes(b"PK")
    return sub


def test_agent_run_installs_units_script_and_staged_wheels(tmp_path: Path) -> None:
    rootfs = fake_rootfs(tmp_path / "rootfs")
    sub = assembled_agent_sub_stage(tmp_path)
    proc = run_script(sub / "01-run.sh", rootfs, sub, AUTOPI_MASTER="master.example",
                      AUTOPI_ID_PREFIX="truck")
    assert proc.returncode == 0, proc.stderr
    modes = {
        "usr/lib/systemd/system/autopi-agent.service": 0o644,
        "usr/lib/systemd/system/autopi-agent-firstboot.service": 0o644,
        "usr/lib/sysusers.d/autopi-agent.conf": 0o644,
        "usr/lib/tmpfiles.d/autopi-agent.conf": 0o644,
        "usr/lib/autopi-agent/firstboot": 0o755,
        "usr/share/doc/autopi-agent/README.md": 0o644,
        "var/lib/autopi-build/wheels/requirements.lock": 0o644,
        "var/lib/autopi-build/render_config.py": 0o644,
        "etc/default/autopi-agent": 0o644,
    }
    for relative, mode in modes.items():
        assert stat.S_IMODE((rootfs / relative).stat().st_mode) == mode, relative
    assert (rootfs / "etc/default/autopi-agent").read_text() == "AUTOPI_ID_PREFIX=truck\n"


def test_agent_run_needs_a_master_and_the_wheels(tmp_path: Path) -> None:
    rootfs = fake_rootfs(tmp_path / "rootfs")
    sub = assembled_agent_sub_stage(tmp_path)
    no_master = run_script(sub / "01-run.sh", rootfs, sub)
    assert no_master.returncode != 0 and "AUTOPI_MASTER" in no_master.stderr
    for wheel in (sub / "files/wheels").glob("*.whl"):
        wheel.unlink()
    no_wheel = run_script(sub / "01-run.sh", rootfs, sub, AUTOPI_MASTER="m")
    assert no_wheel.returncode == 1 and "assemble-stage.sh" in no_wheel.stderr
