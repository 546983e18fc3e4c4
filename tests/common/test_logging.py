"""structlog setup: JSON lines off a terminal, console on one, and safe to call again."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from autopi_common.logging import setup_logging


class FakeTty(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put structlog and the root logger back as they were."""
    saved: dict[str, Any] = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


def ours() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, "_autopi_handler", False)]


def test_json_lines_when_not_a_tty() -> None:
    stream = io.StringIO()
    setup_logging("info", "auto", stream)
    structlog.get_logger("autopi.test").info("job.returned", jid="20240101", minion="car-1")
    record = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert record["event"] == "job.returned"
    assert record["jid"] == "20240101" and record["minion"] == "car-1"
    assert record["level"] == "info"
    assert record["logger"] == "autopi.test"
    assert "timestamp" in record


def test_console_on_a_tty() -> None:
    stream = FakeTty()
    setup_logging("info", "auto", stream)
    structlog.get_logger("t").warning("link.down", seconds=3)
    text = stream.getvalue()
    assert "link.down" in text and "seconds" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.strip().splitlines()[-1])


def test_level_filters() -> None:
    stream = io.StringIO()
    setup_logging("warning", "json", stream)
    log = structlog.get_logger("t")
    log.info("quiet.event")
    log.error("loud.event")
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["loud.event"]


def test_salt_level_names_are_accepted() -> None:
    stream = io.StringIO()
    setup_logging("trace", "json", stream)
    structlog.get_logger("t").debug("deep.event")
    assert "deep.event" in stream.getvalue()


def test_stdlib_logging_is_rendered_too() -> None:
    stream = io.StringIO()
    setup_logging("info", "json", stream)
    logging.getLogger("obd.obd").warning("adapter %s gone", "elm")
    record = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert record["event"] == "adapter elm gone"
    assert record["logger"] == "obd.obd"


def test_exceptions_are_in_json() -> None:
    stream = io.StringIO()
    setup_logging("info", "json", stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger("t").exception("job.crashed")
    record = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert "RuntimeError: boom" in record["exception"]


def test_idempotent_and_reconfigurable() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("info", "json", first)
    setup_logging("info", "json", first)
    assert len(ours()) == 1
    setup_logging("info", "json", second)
    assert len(ours()) == 1
    structlog.get_logger("t").info("after.reconfigure")
    assert "after.reconfigure" in second.getvalue()
    assert "after.reconfigure" not in first.getvalue()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="log level"):
        setup_logging("loud", "json", io.StringIO())
    with pytest.raises(ValueError, match="log format"):
        setup_logging("info", "xml", io.StringIO())  # type: ignore[arg-type]
