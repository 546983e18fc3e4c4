"""The declarative config schema: defaults, conversion, errors that name file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from autopi_common.config import ConfigError, Field, load

SECTION = (
    Field("port", "str", "/dev/serial0", "Serial port."),
    Field("baudrate", "int", 9600, "Baud rate."),
    Field("log_file", "path", "obd.log", "Where samples go."),
)

SCHEMA = (
    Field("name", "str", "car", "A name."),
    Field("count", "int", 3, "A count."),
    Field("ratio", "float", 0.5, "A ratio."),
    Field("enabled", "bool", False, "A switch."),
    Field("tags", "list[str]", [], "Tags."),
    Field("extra", "dict", {}, "Free mapping."),
    Field("root_dir", "path", "/var/lib/thing", "Base directory."),
    Field("data_dir", "path", "data", "Data directory."),
    Field("port", "port", 4506, "A port."),
    Field("master", "str|list[str]", "salt", "Master(s)."),
    Field("mode", "str", "fast", "Mode.", choices=("fast", "slow")),
    Field("even", "int", 2, "An even number.",
          check=lambda v: None if v % 2 == 0 else "an even number"),
    Field("obd", "dict", {}, "OBD section.", schema=SECTION),
)


def write(tmp_path: Path, text: str, name: str = "agent.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_without_a_file() -> None:
    opts = load(None, SCHEMA)
    assert opts["name"] == "car"
    assert opts["count"] == 3
    assert opts["root_dir"] == "/var/lib/thing"
    assert opts["data_dir"] == "/var/lib/thing/data"
    assert opts["obd"] == {"port": "/dev/serial0", "baudrate": 9600,
                           "log_file": "/var/lib/thing/obd.log"}


def test_mutable_defaults_are_not_shared() -> None:
    first = load(None, SCHEMA)
    first["tags"].append("x")
    first["extra"]["k"] = 1
    second = load(None, SCHEMA)
    assert second["tags"] == [] and second["extra"] == {}


def test_values_from_yaml_are_converted(tmp_path: Path) -> None:
    path = write(tmp_path, "name: 1234\ncount: '7'\nratio: 2\nenabled: 'yes'\n"
                           "tags: [a, b]\nport: 4000\nmaster: [m1, m2]\nmode: slow\n")
    opts = load(path, SCHEMA)
    assert opts["name"] == "1234"  # an unquoted serial number is still a string
    assert opts["count"] == 7
    assert opts["ratio"] == 2.0 and isinstance(opts["ratio"], float)
    assert opts["enabled"] is True
    assert opts["tags"] == ["a", "b"]
    assert opts["port"] == 4000
    assert opts["master"] == ["m1", "m2"]
    assert opts["mode"] == "slow"


def test_relative_paths_resolve_against_root_dir(tmp_path: Path) -> None:
    path = write(tmp_path, "root_dir: state\ndata_dir: d/../spool\n")
    opts = load(path, SCHEMA)
    assert opts["root_dir"] == str(tmp_path / "state")
    assert opts["data_dir"] == str(tmp_path / "state" / "spool")


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    path = write(tmp_path, f"root_dir: {tmp_path}\ndata_dir: /srv/data\n")
    assert load(path, SCHEMA)["data_dir"] == "/srv/data"


def test_empty_values_mean_the_default(tmp_path: Path) -> None:
    path = write(tmp_path, "tags:\nextra:\nname:\n")
    opts = load(path, SCHEMA)
    assert opts["tags"] == [] and opts["extra"] == {} and opts["name"] == "car"


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load(write(tmp_path, ""), SCHEMA)["count"] == 3


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("port: abc", "port", "expected a port number 1-65535, got 'abc'"),
        ("port: 70000", "port", "expected a port number 1-65535, got 70000"),
        ("port: true", "port", "expected a port number 1-65535, got True"),
        ("count: 1.5", "count", "expected an integer, got 1.5"),
        ("ratio: nan", "ratio", "expected a number"),
        ("enabled: maybe", "enabled", "expected true or false, got 'maybe'"),
        ("tags: a", "tags", "expected a list of strings, got 'a'"),
        ("extra: [1]", "extra", "expected a mapping, got [1]"),
        ("master: []", "master", "expected a string or a non-empty list of strings"),
        ("mode: medium", "mode", "expected one of 'fast', 'slow', got 'medium'"),
        ("even: 3", "even", "expected an even number, got 3"),
        ("name: true", "name", "expected a string, got True"),
    ],
)
def test_errors_name_file_key_and_expectation(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    path = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as info:
        load(path, SCHEMA)
    message = str(info.value)
    assert message.startswith(f"{path}: key '{key}': ")
    assert expected in message


def test_error_message_example_format(tmp_path: Path) -> None:
    path = write(tmp_path, "port: abc\n")
    with pytest.raises(ConfigError, match=r"agent\.yaml: key 'port': expected a port number "
                                          r"1-65535, got 'abc'$"):
        load(path, SCHEMA)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_nested_section_is_validated(tmp_path: Path) -> None:
    path = write(tmp_path, "root_dir: r\nobd:\n  baudrate: '38400'\n")
    opts = load(path, SCHEMA)
    assert opts["obd"] == {"port": "/dev/serial0", "baudrate": 38400,
                           "log_file": str(tmp_path / "r" / "obd.log")}


def test_nested_section_error_names_dotted_key(tmp_path: Path) -> None:
    path = write(tmp_path, "obd:\n  baudrate: fast\n")
    with pytest.raises(ConfigError, match=r"key 'obd\.baudrate': expected an integer"):
        load(path, SCHEMA)


def test_unknown_keys_warn_and_are_dropped(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nmine_interval: 60\nobd:\n  speed: 1\n")
    with structlog.testing.capture_logs() as logs:
        opts = load(path, SCHEMA)
    assert "mine_interval" not in opts
    unknown = [(e["key"], e["log_level"]) for e in logs if e["event"] == "config.unknown_key"]
    assert unknown == [("mine_interval", "warning"), ("obd.speed", "warning")]


def test_overrides_win_and_are_validated(tmp_path: Path) -> None:
    path = write(tmp_path, "count: 5\nname: fromfile\n")
    opts = load(path, SCHEMA, {"count": "9"})
    assert opts["count"] == 9 and opts["name"] == "fromfile"
    with pytest.raises(ConfigError, match=r"^overrides: key 'count': expected an integer"):
        load(path, SCHEMA, {"count": "many"})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read"):
        load(missing, SCHEMA)


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"agent\.yaml: not valid YAML"):
        load(path, SCHEMA)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        load(write(tmp_path, text), SCHEMA)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = write(tmp_path, "name: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(path, SCHEMA)


def test_field_is_frozen() -> None:
    field: Any = SCHEMA[0]
    with pytest.raises(AttributeError):
        field.name = "other"
