"""What the stage and the first boot write: agent.yaml from build settings, the minion id from
the serial number, the pinned wheel lock, and the factory allow-list merge."""

from __future__ import annotations

import importlib.util
import os
import re
import stat
import subprocess
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from autopi_agent.config import load_agent_config
from cloud_master.config import load_preseed_keys

REPO = Path(__file__).resolve().parents[2]
FILES = REPO / "image/pi-gen-stage/00-agent/files"
FIRSTBOOT = FILES / "firstboot"
FINGER = ":".join(f"{b:02x}" for b in range(32))
OTHER_FINGER = ":".join(f"{b:02x}" for b in range(100, 132))


def load_script(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = load_script(FILES / "render_config.py", "render_config")
preseed = load_script(REPO / "image/factory_preseed.py", "factory_preseed")


# -- agent.yaml from the build settings --------------------------------------------------


def render_to(tmp_path: Path, env: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    out = tmp_path / "agent.yaml"
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        assert render.main(["render_config.py", str(out)]) == 0
    finally:
        os.environ.clear()
        os.environ.update(old)
    return yaml.safe_load(out.read_text()), load_agent_config(out)


def test_rendered_config_is_what_the_agent_loads(tmp_path: Path) -> None:
    raw, opts = render_to(tmp_path, {
        "AUTOPI_MASTER": "master.example.com", "AUTOPI_MASTER_PORT": "14506",
        "AUTOPI_PUBLISH_PORT": "14505", "AUTOPI_MASTER_FINGER": FINGER.upper(),
        "AUTOPI_FLEET": "trucks-eu", "AUTOPI_OBD_PORT": "/dev/ttyAMA0",
        "AUTOPI_OBD_BAUDRATE": "115200"})
    assert "id" not in raw, "the id is the first boot's to set"
    assert (opts["master"], opts["master_port"], opts["publish_port"]) == (
        "master.example.com", 14506, 14505)
    assert opts["master_finger"] == FINGER
    assert opts["grains"] == {"fleet": "trucks-eu"}
    assert (opts["obd"]["port"], opts["obd"]["baudrate"]) == ("/dev/ttyAMA0", 115200)
    assert opts["root_dir"] == "/var/lib/autopi-agent" and opts["log_format"] == "json"
    assert opts["pki_dir"] == "/var/lib/autopi-agent/pki/minion"


def test_rendered_defaults_and_a_master_list(tmp_path: Path) -> None:
    raw, opts = render_to(tmp_path, {"AUTOPI_MASTER": "10.0.0.1, 10.0.0.2"})
    assert opts["master"] == ["10.0.0.1", "10.0.0.2"]
    assert (opts["master_port"], opts["publish_port"]) == (4506, 4505)
    assert raw["obd"] == {"port": "/dev/serial0"} and "master_finger" not in raw
    assert opts["obd"]["port"] == "/dev/serial0"


@pytest.mark.parametrize(("env", "complaint"), [
    ({}, "AUTOPI_MASTER is empty"),
    ({"AUTOPI_MASTER": "bad host!"}, "not a host name"),
    ({"AUTOPI_MASTER": "m", "AUTOPI_MASTER_PORT": "70000"}, "AUTOPI_MASTER_PORT"),
    ({"AUTOPI_MASTER": "m", "AUTOPI_FLEET": "a b"}, "AUTOPI_FLEET"),
    ({"AUTOPI_MASTER": "m", "AUTOPI_OBD_PORT": "serial0"}, "AUTOPI_OBD_PORT"),
    ({"AUTOPI_MASTER": "m", "AUTOPI_OBD_BAUDRATE": "fast"}, "AUTOPI_OBD_BAUDRATE"),
])
def test_bad_settings_are_refused_by_name(env: dict[str, str], complaint: str) -> None:
    with pytest.raises(render.SettingError, match=complaint):
        render.agent_config(env)


# -- the minion id from the serial number ------------------------------------------------


def firstboot_id(sysroot: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FIRSTBOOT), "id"], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "AUTOPI_SYSROOT": str(sysroot), **env})


def write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)


def test_id_from_the_device_tree_serial_number(tmp_path: Path) -> None:
    write(tmp_path / "proc/device-tree/serial-number", b"10000000ABCDEF12\0")
    write(tmp_path / "proc/cpuinfo", "Serial\t\t: 00000000deadbeef\n")
    proc = firstboot_id(tmp_path, AUTOPI_ID_PREFIX="truck")
    assert (proc.returncode, proc.stdout) == (0, "truck-10000000abcdef12\n")


def test_id_from_cpuinfo_when_the_device_tree_has_none(tmp_path: Path) -> None:
    write(tmp_path / "proc/cpuinfo", "processor\t: 0\nHardware\t: BCM2835\n"
                                     "Serial\t\t: 00000000DEADBEEF\nModel\t: Pi\n")
    assert firstboot_id(tmp_path).stdout == "autopi-00000000deadbeef\n"


def test_a_zero_serial_falls_back_to_the_machine_id(tmp_path: Path) -> None:
    write(tmp_path / "proc/device-tree/serial-number", b"0000000000000000\0")
    write(tmp_path / "proc/cpuinfo", "Serial\t\t: 0000000000000000\n")
    write(tmp_path / "etc/machine-id", "0123456789abcdef0123456789abcdef\n")
    proc = firstboot_id(tmp_path)
    assert proc.stdout == "autopi-0123456789abcdef\n"
    assert "using the machine id" in proc.stderr


def test_no_serial_and_no_machine_id_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "etc/machine-id", "")
    proc = firstboot_id(tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "found no serial number" in proc.stderr


def test_firstboot_refuses_unknown_commands(tmp_path: Path) -> None:
    proc = subprocess.run([str(FIRSTBOOT), "sideways"], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage" in proc.stderr
    assert stat.S_IMODE(FIRSTBOOT.stat().st_mode) == 0o755


# -- the pinned dependencies -------------------------------------------------------------


def locked() -> dict[str, tuple[str, list[str]]]:
    text = (FILES / "requirements.lock").read_text().replace("\\\n", " ")
    pins: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        pin, *hashes = line.split()
        name, version = pin.split("==")
        assert name not in pins, f"{name} locked twice"
        pins[name] = (version, hashes)
    return pins


def test_lock_pins_every_dependency_with_a_hash() -> None:
    pins = locked()
    for _name, (_version, hashes) in pins.items():
        assert hashes and all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", h) for h in hashes)
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dependency in dependencies:
        requirement = Requirement(dependency)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is a dependency but not in requirements.lock"
        assert pins[name][0] in requirement.specifier, f"{name}=={pins[name][0]} vs {requirement}"


# -- factory pre-seeding -----------------------------------------------------------------


def test_identities_merge_into_an_allow_list_the_master_loads(tmp_path: Path) -> None:
    allow = tmp_path / "preseed.yaml"
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(f'autopi-0001: "{FINGER}"\n')
    second.write_text(f'autopi-0002: "{OTHER_FINGER.upper()}"\n')
    assert preseed.main([str(allow), str(first)]) == 0
    allow.chmod(0o600)
    assert preseed.main([str(allow), str(second), str(first)]) == 0
    assert load_preseed_keys(allow) == {"autopi-0001": FINGER, "autopi-0002": OTHER_FINGER}
    assert stat.S_IMODE(allow.stat().st_mode) == 0o600, "an existing file keeps its mode"


def test_a_changed_key_needs_replace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    allow = tmp_path / "preseed.yaml"
    card = tmp_path / "card.yaml"
    card.write_text(f"autopi-0001: '{FINGER}'\n")
    assert preseed.main([str(allow), str(card)]) == 0
    card.write_text(f"autopi-0001: '{OTHER_FINGER}'\n")
    assert preseed.main([str(allow), str(card)]) == 1
    assert "--replace" in capsys.readouterr().err
    assert load_preseed_keys(allow) == {"autopi-0001": FINGER}
    assert preseed.main([str(allow), str(card), "--replace"]) == 0
    assert load_preseed_keys(allow) == {"autopi-0001": OTHER_FINGER}


@pytest.mark.parametrize("text", ["autopi-1: nope\n", "- a list\n", "autopi-1: [1, 2]\n", "{\n"])
def test_bad_identity_files_are_refused(tmp_path: Path, text: str) -> None:
    card = tmp_path / "card.yaml"
    card.write_text(text)
    with pytest.raises(preseed.PreseedError, match=str(card)):
        preseed.read_mapping(card)
    assert preseed.main([str(tmp_path / "allow.yaml"), str(card)]) == 1
    assert not (tmp_path / "allow.yaml").exists()
