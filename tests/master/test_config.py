"""The master's config: Salt's names, safe defaults, roots under root_dir, preseed list."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog.testing

from cloud_master.config import (
    MASTER_SCHEMA,
    ConfigError,
    load_master_config,
    load_preseed_keys,
)

FINGER = ":".join(["0a"] * 32)


def test_defaults() -> None:
    opts = load_master_config()
    assert opts["interface"] == "0.0.0.0"
    assert (opts["publish_port"], opts["ret_port"]) == (4505, 4506)
    assert opts["pki_dir"] == "/var/lib/cloud-master/pki/master"
    assert opts["cachedir"] == "/var/lib/cloud-master/cache"
    assert opts["sock_dir"] == "/var/lib/cloud-master/run"
    assert opts["auto_accept"] is False
    assert opts["preseed_keys_file"] == ""
    assert opts["keep_jobs"] == 24 and opts["timeout"] == 5
    assert opts["max_request_size"] == 16777216
    assert opts["file_roots"] == {"base": ["/var/lib/cloud-master/srv/salt"]}
    assert opts["pillar_roots"] == {"base": ["/var/lib/cloud-master/srv/pillar"]}
    assert opts["encryption_algorithm"] == "OAEP-SHA224"
    assert opts["open_mode"] is False


def test_every_field_has_help() -> None:
    assert all(len(field.help) > 10 for field in MASTER_SCHEMA)


def test_a_salt_master_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "master"
    path.write_text(
        f"root_dir: {tmp_path}\n"
        "interface: 127.0.0.1\n"
        "file_roots:\n  base: [/srv/salt, states]\n  dev: [/srv/dev]\n"
        "preseed_keys_file: preseed.yaml\n"
        "worker_threads: 5\n"  # Salt-only key: ignored
    )
    opts = load_master_config(path)
    assert opts["interface"] == "127.0.0.1"
    assert opts["file_roots"] == {"base": ["/srv/salt", str(tmp_path / "states")],
                                  "dev": ["/srv/dev"]}
    assert opts["preseed_keys_file"] == str(tmp_path / "preseed.yaml")
    assert "worker_threads" not in opts


def test_open_mode_is_never_honoured() -> None:
    with structlog.testing.capture_logs() as logs:
        opts = load_master_config(overrides={"open_mode": True})
    assert opts["open_mode"] is False
    assert [e["event"] for e in logs] == ["config.open_mode_ignored"]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"ret_port": 0}, "ret_port"),
        ({"file_roots": {"base": "/srv/salt"}}, "file_roots"),
        ({"signing_algorithm": "none"}, "signing_algorithm"),
        ({"max_request_size": -1}, "max_request_size"),
        ({"auto_accept": "sometimes"}, "auto_accept"),
        ({"job_cache": "mongodb"}, "job_cache"),
    ],
)
def test_bad_values_are_refused(overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=f"key '{key}'"):
        load_master_config(overrides=overrides)


def test_preseed_keys(tmp_path: Path) -> None:
    path = tmp_path / "preseed.yaml"
    path.write_text(f"car-1: '{FINGER.upper()}'\n2002: '{FINGER}'\n")
    assert load_preseed_keys(path) == {"car-1": FINGER, "2002": FINGER}


def test_empty_preseed_file(tmp_path: Path) -> None:
    path = tmp_path / "preseed.yaml"
    path.write_text("")
    assert load_preseed_keys(path) == {}


@pytest.mark.parametrize("text", ["car-1: 'ab:cd'\n", "car-1: 12\n", "- car-1\n"])
def test_bad_preseed_entries(tmp_path: Path, text: str) -> None:
    path = tmp_path / "preseed.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="preseed.yaml"):
        load_preseed_keys(path)


def test_missing_preseed_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_preseed_keys(tmp_path / "absent.yaml")
