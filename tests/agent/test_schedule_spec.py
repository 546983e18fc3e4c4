"""Schedule entries: Salt's keys accepted, everything else refused with the job and key named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autopi_agent.minion.schedule_book import ScheduleBook
from autopi_agent.minion.schedule_spec import (
    InvalidJob,
    Splay,
    check_schedule,
    parse_job,
    parse_schedule,
)
from autopi_common.config import ConfigError, Field, validate


def test_a_full_salt_entry() -> None:
    spec = parse_job("fuel", {
        "function": "obd.query", "args": ["FUEL_LEVEL"], "kwargs": {"force": True},
        "minutes": 1, "seconds": 30, "splay": 5, "enabled": True, "returner": "jsonl,syslog",
        "return_job": False, "run_on_start": False, "maxrunning": 2, "jid_include": False,
        "metadata": {"owner": "fleet"}, "name": "fuel", "_seconds": 90, "_next_fire_time": None,
    })
    assert spec.function == "obd.query"
    assert spec.interval == 90.0
    assert spec.cron is None
    assert spec.splay == Splay(0.0, 5.0)
    assert spec.returners == ("jsonl", "syslog")
    assert (spec.return_job, spec.run_on_start, spec.maxrunning, spec.jid_include) == \
        (False, False, 2, False)
    assert spec.wire_args() == ["FUEL_LEVEL", {"__kwarg__": True, "force": True}]
    assert "_seconds" not in spec.definition and "name" not in spec.definition


def test_salt_defaults() -> None:
    interval = parse_job("a", {"fun": "test.ping", "hours": 1})
    assert (interval.enabled, interval.return_job, interval.run_on_start, interval.maxrunning,
            interval.jid_include, interval.splay) == (True, True, True, 1, True, None)
    cron = parse_job("b", {"func": "test.ping", "cron": "0 * * * *"})
    assert cron.run_on_start is False
    assert cron.cron is not None and cron.cron.minutes == {0}


BAD: list[tuple[Any, str]] = [
    ({"seconds": 10}, "schedule job 'job': no 'function' given"),
    ({"function": "ping", "seconds": 10}, "key 'function': expected a function name"),
    ({"function": "test.ping", "fun": "test.ping", "seconds": 1}, "function given twice"),
    ({"function": "test.ping"}, "no timing given"),
    ({"function": "test.ping", "seconds": 0}, "key 'seconds': expected an interval above 0"),
    ({"function": "test.ping", "seconds": -5}, "key 'seconds': expected a number of 0 or more"),
    ({"function": "test.ping", "minutes": "often"}, "key 'minutes': expected a number"),
    ({"function": "test.ping", "hours": True}, "key 'hours': expected a number"),
    ({"function": "test.ping", "seconds": 5, "cron": "* * * * *"}, "both 'cron' and 'seconds'"),
    ({"function": "test.ping", "cron": "61 * * * *"}, "key 'cron': .*minute 61"),
    ({"function": "test.ping", "seconds": 5, "when": "5pm"}, "key 'when': Salt's 'when' is not"),
    ({"function": "test.ping", "seconds": 5, "once": "2024"}, "key 'once'"),
    ({"function": "test.ping", "seconds": 5, "range": {}}, "key 'range'"),
    ({"function": "test.ping", "seconds": 5, "colour": "red"}, "key 'colour' is unknown"),
    ({"function": "test.ping", "seconds": 5, "args": "x"}, "key 'args': expected a list"),
    ({"function": "test.ping", "seconds": 5, "kwargs": [1]}, "key 'kwargs': expected a mapping"),
    ({"function": "test.ping", "seconds": 5, "args": [b"raw"]}, "key 'args': expected strings"),
    ({"function": "test.ping", "seconds": 5, "maxrunning": 0}, "key 'maxrunning'"),
    ({"function": "test.ping", "seconds": 5, "enabled": "maybe"}, "key 'enabled': expected true"),
    ({"function": "test.ping", "seconds": 5, "returner": 3}, "key 'returner'"),
    ({"function": "test.ping", "seconds": 5, "splay": {"start": 9, "end": 1}}, "key 'splay'"),
    ({"function": "test.ping", "seconds": 5, "return_job": "nocache"}, "key 'return_job'"),
    ("test.ping", "expected a mapping of settings"),
]


@pytest.mark.parametrize(("definition", "message"), BAD)
def test_invalid_entries_name_the_job_and_key(definition: Any, message: str) -> None:
    with pytest.raises(InvalidJob, match=message) as caught:
        parse_job("job", definition)
    assert str(caught.value).startswith("schedule job 'job': ")


def test_whole_schedule_settings_and_errors() -> None:
    settings, jobs, errors = parse_schedule({
        "enabled": False, "splay": 10,
        "good": {"function": "test.ping", "seconds": 5},
        "own_splay": {"function": "test.ping", "seconds": 5, "splay": 2},
        "bad": {"function": "test.ping"},
    })
    assert settings.enabled is False
    assert jobs["good"].splay == Splay(0.0, 10.0)
    assert jobs["own_splay"].splay == Splay(0.0, 2.0)
    assert errors == ["schedule job 'bad': no timing given: add 'seconds', 'minutes', 'hours', "
                      "'days' or 'cron'"]
    with pytest.raises(InvalidJob, match="skip_function"):
        parse_schedule({"skip_function": "test.ping"})


def test_config_check_rejects_a_bad_schedule_with_a_clear_error(tmp_path: Path) -> None:
    schema = (Field("schedule", "dict", {}, "jobs", check=check_schedule),)
    good = {"ping": {"function": "test.ping", "minutes": 5}}
    assert validate({"schedule": good}, schema, source="agent.yaml", base_dir=tmp_path) == \
        {"schedule": good}
    bad = {"ping": {"function": "test.ping", "minutes": 5, "when": "noon"}}
    with pytest.raises(ConfigError, match="agent.yaml: key 'schedule': expected a valid "
                                          "schedule \\(schedule job 'ping': key 'when'"):
        validate({"schedule": bad}, schema, source="agent.yaml", base_dir=tmp_path)
    assert check_schedule([1]) is not None


def test_the_book_refuses_an_invalid_config(tmp_path: Path) -> None:
    with pytest.raises(InvalidJob, match="schedule job 'x': key 'days'"):
        ScheduleBook({"x": {"function": "test.ping", "days": "weekly"}}, tmp_path / "s.json")


def test_an_unreadable_saved_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "schedule.json"
    path.write_text("{not json")
    book = ScheduleBook({"x": {"function": "test.ping", "days": 1}}, path)
    assert list(book.jobs()) == ["x"]
    path.write_text('{"format": 1, "enabled": null, "deleted": [], '
                    '"jobs": {"y": {"function": "test.ping"}}}')
    book = ScheduleBook({"x": {"function": "test.ping", "days": 1}}, path)
    assert list(book.jobs()) == ["x"]
    assert book.errors == ["saved: schedule job 'y': no timing given: add 'seconds', 'minutes', "
                           "'hours', 'days' or 'cron'"]


def test_an_older_snapshot_never_overwrites_a_newer_one(tmp_path: Path) -> None:
    path = tmp_path / "schedule.json"
    book = ScheduleBook({}, path)
    book.add("a", {"function": "test.ping", "days": 1})
    older = book.snapshot()
    book.add("b", {"function": "test.ping", "days": 1})
    newer = book.snapshot()
    book.write(*newer)
    book.write(*older)  # a slower writer thread finishing late
    assert sorted(ScheduleBook({}, path).jobs()) == ["a", "b"]
