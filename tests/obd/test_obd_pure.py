"""The pure parts: settings schema, error kinds, adapter reply sorting, VIN decoding."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from autopi_agent.obd import errors
from autopi_agent.obd.errors import (
    ObdAdapterGone,
    ObdBadResponse,
    ObdConfigError,
    ObdError,
    ObdNegativeResponse,
    ObdTimeout,
    ObdUnableToConnect,
    restated,
)
from autopi_agent.obd.frames import vin_from_payload
from autopi_agent.obd.replies import parse_reply, raise_for_status
from autopi_agent.obd.settings import OBD_SCHEMA, ObdSettings
from autopi_common.config import Field, validate

ERRORS = [cls for cls in vars(errors).values()
          if isinstance(cls, type) and issubclass(cls, ObdError) and cls is not ObdError]


def test_settings_are_off_until_a_port_is_set() -> None:
    assert ObdSettings.from_opts({}) == ObdSettings(port="", baudrate=0, protocol="auto")
    assert not ObdSettings.from_opts(None).enabled
    serial0 = ObdSettings.from_opts({"port": "/dev/serial0"})  # what the image writes
    assert serial0.enabled and not serial0.is_url and serial0.timeout == 5.0
    assert ObdSettings.from_opts({"port": "socket://10.0.0.5:35000"}).is_url


def test_reading_the_settings_does_not_import_python_obd() -> None:
    # The agent config imports the schema: python-OBD (and pint) load only when OBD is used.
    code = ("import sys, autopi_agent.obd, autopi_agent.obd.settings; "
            "sys.exit('obd' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


@pytest.mark.parametrize(("given", "protocol"), [(6, "6"), ("a", "A"), ("AUTO", "auto"),
                                                  ("0", "auto"), (None, "auto")])
def test_protocol_is_auto_or_an_elm_number(given: object, protocol: str) -> None:
    assert ObdSettings.from_opts({"protocol": given}).protocol == protocol


@pytest.mark.parametrize(("section", "key"), [({"protocol": "Z"}, "obd.protocol"),
                                              ({"baudrate": "fast"}, "obd.baudrate"),
                                              ({"baudrate": 12}, "obd.baudrate"),
                                              ({"timeout": 0}, "obd.timeout")])
def test_bad_settings_name_the_key(section: dict[str, object], key: str) -> None:
    with pytest.raises(ObdConfigError, match=key.replace(".", r"\.")):
        ObdSettings.from_opts(section)


def test_the_schema_plugs_into_the_agent_config_as_a_section(tmp_path: Path) -> None:
    schema = (Field("obd", "dict", {}, "OBD adapter settings.", schema=OBD_SCHEMA),)
    opts = validate({"obd": {"port": "/dev/ttyUSB0", "baudrate": "115200"}}, schema,
                    source="agent.yaml", base_dir=tmp_path)
    assert opts["obd"]["baudrate"] == 115200 and opts["obd"]["timeout"] == 5.0
    assert ObdSettings.from_opts(opts["obd"]).port == "/dev/ttyUSB0"


def test_each_error_kind_has_its_own_retcode_and_builtin() -> None:
    assert len({cls.kind for cls in ERRORS}) == len({cls.retcode for cls in ERRORS}) == len(ERRORS)
    assert all(40 <= cls.retcode <= 49 for cls in ERRORS)
    assert issubclass(ObdTimeout, TimeoutError) and issubclass(ObdAdapterGone, ConnectionError)
    assert issubclass(ObdUnableToConnect, ConnectionError) and issubclass(ObdConfigError, ValueError)


def test_restated_keeps_the_class_and_fields() -> None:
    refusal = ObdNegativeResponse("RPM: refused", service=1, nrc=0x22)
    again = restated(refusal, "RPM: refused (next attempt in 1.0 s)")
    assert type(again) is ObdNegativeResponse and (again.service, again.nrc) == (1, 0x22)
    assert str(again).endswith("(next attempt in 1.0 s)") and str(refusal) == "RPM: refused"
    assert again.to_dict() == {"error": "negative_response", "message": str(again),
                               "service": "01", "nrc": "22", "nrc_name": "conditions not correct"}


def test_reply_lines_are_sorted_into_frames_status_and_the_rest() -> None:
    reply = parse_reply(["010C", "SEARCHING...", "7E8 04 41 0C 0C 30", "7E8 03 7F 01 78"],
                        echo="010C")
    assert reply.frames == ("7E804410C0C30",) and reply.pending == 1 and not reply.garbled
    assert parse_reply(["BUS INIT: ...ERROR"]).status == ("BUS INIT",)
    junk = parse_reply(["\x93\x01zz", "x7E8 04 41 0C 0C 30"])
    assert junk.frames == ("7E804410C0C30",) and junk.garbled


@pytest.mark.parametrize(("lines", "kind"), [
    (["NO DATA"], "no_data"), (["CAN ERROR"], "bus_error"), (["BUS INIT: ...ERROR"], "bus_error"),
    (["SEARCHING...", "UNABLE TO CONNECT"], "unable_to_connect"), (["?"], "unsupported"),
    (["STOPPED"], "bus_error"), (["\x93\x01zz"], "bad_response"), ([], "no_data"),
])
def test_a_reply_without_frames_raises_its_kind(lines: list[str], kind: str) -> None:
    with pytest.raises(ObdError) as caught:
        raise_for_status(parse_reply(lines), "RPM (010C)")
    assert caught.value.kind == kind and str(caught.value).startswith("RPM (010C): ")


def test_vin_from_can_and_legacy_answers() -> None:
    vin = "1FTFW1ET5DFC10312"
    assert vin_from_payload(b"\x49\x02\x01" + vin.encode()) == vin
    assert vin_from_payload(b"\x49\x02" + b"\x00\x00\x00" + vin.encode()) == vin  # legacy
    with pytest.raises(ObdBadResponse, match="not a 17-character VIN"):
        vin_from_payload(b"\x49\x02\x01" + b"WAUZZZ8V7JA03157")
    with pytest.raises(ObdBadResponse, match="not a 09 02 answer"):
        vin_from_payload(b"\x41\x0c\x0c\x30")
