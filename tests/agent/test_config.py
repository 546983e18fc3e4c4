"""The agent's config: Salt's option names, safe defaults, clear errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from autopi_agent.config import AGENT_SCHEMA, ConfigError, load_agent_config

FINGER = "ba:30:65:2a:d6:9e:20:4f:d8:b2:f3:a7:d4:65:11:13:a4:d6:1b:13:f7:82:73:b4:be:11:52:65:bb:99:cb:bd"

SALT_MINION_CONFIG = f"""\
id: car-0001
master: [master-a.example.com, master-b.example.com]
master_port: 4506
publish_port: 4505
acceptance_wait_time: 10
acceptance_wait_time_max: 0
master_finger: '{FINGER}'
log_level: warning
# keys a Salt user carries that we do not use
file_client: remote
mine_interval: 60
grains:
  roles: [telematics]
"""


def test_defaults() -> None:
    opts = load_agent_config()
    assert opts["id"] == socket.gethostname()
    assert opts["master"] == "salt"
    assert (opts["master_port"], opts["publish_port"]) == (4506, 4505)
    assert opts["root_dir"] == "/var/lib/autopi-agent"
    assert opts["pki_dir"] == "/var/lib/autopi-agent/pki/minion"
    assert opts["cachedir"] == "/var/lib/autopi-agent/cache"
    assert opts["encryption_algorithm"] == "OAEP-SHA224"
    assert opts["signing_algorithm"] == "PKCS1v15-SHA224"
    assert opts["cmd_enabled"] is False
    assert opts["master_finger"] == ""
    assert opts["acceptance_wait_time_max"] == 0
    assert opts["grains"] == {} and opts["schedule"] == {}
    assert opts["obd"]["port"] == ""  # no adapter unless configured: the OBD owner stays off
    assert (opts["recon_default"], opts["recon_max"]) == (1000, 10000)
    assert opts["heartbeat_interval"] == 15 and opts["heartbeat_timeout"] == 45
    assert opts["keysize"] == 2048 and opts["job_timeout"] == 300


def test_every_field_has_help() -> None:
    assert all(len(field.help) > 10 for field in AGENT_SCHEMA)
    assert len({field.name for field in AGENT_SCHEMA}) == len(AGENT_SCHEMA)


def test_a_salt_minion_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "minion"
    path.write_text(SALT_MINION_CONFIG)
    opts = load_agent_config(path)
    assert opts["id"] == "car-0001"
    assert opts["master"] == ["master-a.example.com", "master-b.example.com"]
    assert opts["master_finger"] == FINGER
    assert opts["log_level"] == "warning"
    assert opts["grains"] == {"roles": ["telematics"]}
    assert "file_client" not in opts


def test_root_dir_moves_relative_paths(tmp_path: Path) -> None:
    opts = load_agent_config(overrides={"root_dir": str(tmp_path)})
    assert opts["pki_dir"] == str(tmp_path / "pki" / "minion")
    assert opts["cachedir"] == str(tmp_path / "cache")


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"master_port": "abc"}, "master_port"),
        ({"encryption_algorithm": "RSA-PKCS1"}, "encryption_algorithm"),
        ({"signing_algorithm": "PKCS1v15-MD5"}, "signing_algorithm"),
        ({"master_finger": "not-a-finger"}, "master_finger"),
        ({"master_finger": "ab:cd"}, "master_finger"),
        ({"keysize": 1024}, "keysize"),
        ({"id": "  "}, "id"),
        ({"log_level": "chatty"}, "log_level"),
        ({"acceptance_wait_time": 0}, "acceptance_wait_time"),
        ({"recon_max": 10, "recon_default": 1000}, "recon_max"),
    ],
)
def test_bad_values_are_refused(overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=f"key '{key}'"):
        load_agent_config(overrides=overrides)


def test_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("master_port: abc\n")
    with pytest.raises(ConfigError) as info:
        load_agent_config(path)
    assert str(info.value) == (
        f"{path}: key 'master_port': expected a port number 1-65535, got 'abc'"
    )


def test_sha1_finger_from_a_salt_config_is_accepted() -> None:
    finger = ":".join(["ab"] * 20)
    assert load_agent_config(overrides={"master_finger": finger})["master_finger"] == finger
