"""image/build.sh up to pi-gen's config (``--print-config``): settings checked, config sourced."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "image/build.sh"
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExample fleet@ops"
NAMES = ("IMG_NAME", "RELEASE", "STAGE_LIST", "FIRST_USER_NAME", "FIRST_USER_PASS",
         "DISABLE_FIRST_BOOT_USER_RENAME", "ENABLE_SSH", "PUBKEY_SSH_FIRST_USER",
         "PUBKEY_ONLY_SSH", "TIMEZONE_DEFAULT", "KEYBOARD_LAYOUT", "AUTOPI_MASTER", "AUTOPI_FLEET",
         "AUTOPI_MASTER_FINGER")


def print_config(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    key = tmp_path / "id.pub"
    key.write_text(PUBKEY + "\n")
    env = {"PATH": os.environ["PATH"], "AUTOPI_SSH_PUBKEY_FILE": str(key), **settings}
    return subprocess.run([str(BUILD), "--print-config"], env=env, capture_output=True, text=True)


def sourced(config: str) -> dict[str, str]:
    """The variables pi-gen's build.sh would see after ``source config`` (exported or not)."""
    script = 'source /dev/stdin; for n in "$@"; do printf "%s=%s\\0" "$n" "${!n-<unset>}"; done'
    out = subprocess.run(["bash", "-c", script, "-", *NAMES], input=config,
                         capture_output=True, text=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.split("\0") if item)


def test_config_builds_our_stage_after_stage2_with_keys_only(tmp_path: Path) -> None:
    proc = print_config(tmp_path, AUTOPI_MASTER="fleet.example.com", AUTOPI_FLEET="vans")
    assert proc.returncode == 0, proc.stderr
    assert "AUTOPI_MASTER_FINGER is empty" in proc.stderr, "trust on first use is warned about"
    config = sourced(proc.stdout)
    assert config["STAGE_LIST"] == "stage0 stage1 stage2 stage-autopi"
    assert (config["RELEASE"], config["IMG_NAME"]) == ("bookworm", "autopi")
    assert config["PUBKEY_SSH_FIRST_USER"] == PUBKEY
    assert (config["ENABLE_SSH"], config["PUBKEY_ONLY_SSH"]) == ("1", "1")
    assert config["DISABLE_FIRST_BOOT_USER_RENAME"] == "1"
    assert len(config["FIRST_USER_PASS"]) >= 20, "pi-gen needs one; the stage locks it"
    assert config["FIRST_USER_NAME"] == "admin" and config["KEYBOARD_LAYOUT"] == "English (UK)"
    assert (config["AUTOPI_MASTER"], config["AUTOPI_FLEET"]) == ("fleet.example.com", "vans")
    assert "export AUTOPI_MASTER=" in proc.stdout, "pi-gen exports only its own variables"
    assert config["AUTOPI_MASTER_FINGER"] == "<unset>"


def test_each_build_gets_a_new_throwaway_password(tmp_path: Path) -> None:
    first = sourced(print_config(tmp_path, AUTOPI_MASTER="m").stdout)["FIRST_USER_PASS"]
    second = sourced(print_config(tmp_path, AUTOPI_MASTER="m").stdout)["FIRST_USER_PASS"]
    assert first != second


def test_bad_settings_stop_the_build_before_it_starts(tmp_path: Path) -> None:
    assert "AUTOPI_MASTER" in print_config(tmp_path).stderr
    bad_fleet = print_config(tmp_path, AUTOPI_MASTER="m", AUTOPI_FLEET="two words")
    assert bad_fleet.returncode == 1 and "AUTOPI_FLEET" in bad_fleet.stderr
    bad_user = print_config(tmp_path, AUTOPI_MASTER="m", AUTOPI_ADMIN_USER="autopi")
    assert bad_user.returncode == 1 and "AUTOPI_ADMIN_USER" in bad_user.stderr
    no_key = subprocess.run([str(BUILD), "--print-config"], capture_output=True, text=True,
                            env={"PATH": os.environ["PATH"], "AUTOPI_MASTER": "m"})
    assert no_key.returncode == 1 and "AUTOPI_SSH_PUBKEY_FILE" in no_key.stderr


def test_a_quoted_value_survives_sourcing(tmp_path: Path) -> None:
    tricky = 'x"; touch /tmp/pwned; echo "'
    proc = print_config(tmp_path, AUTOPI_MASTER="m", KEYBOARD_LAYOUT=tricky)
    assert sourced(proc.stdout)["KEYBOARD_LAYOUT"] == tricky
