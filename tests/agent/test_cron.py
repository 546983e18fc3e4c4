"""Cron expressions: parsing (table-driven), next fire times, impossible and malformed ones."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from autopi_agent.minion.cron import CronError, CronExpr

UTC = dt.UTC


def at(text: str, tz: dt.tzinfo = UTC) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def show(stamp: float, tz: dt.tzinfo = UTC) -> str:
    return dt.datetime.fromtimestamp(stamp, tz).replace(tzinfo=None).isoformat(timespec="minutes")


NEXT = [
    # expression, after, next fire time (UTC)
    ("* * * * *", "2024-05-01T12:00:30", "2024-05-01T12:01"),
    ("*/15 * * * *", "2024-01-01T00:07", "2024-01-01T00:15"),
    ("0 * * * *", "2024-01-01T00:00", "2024-01-01T01:00"),  # strictly after
    ("30 2 * * *", "2024-01-01T03:00", "2024-01-02T02:30"),
    ("0 0 1 * *", "2024-01-15T08:00", "2024-02-01T00:00"),
    ("0 0 29 2 *", "2023-03-01T00:00", "2024-02-29T00:00"),
    ("0 9 * * mon-fri", "2024-01-06T10:00", "2024-01-08T09:00"),  # Saturday -> Monday
    ("0 9 * * 7", "2024-01-01T00:00", "2024-01-07T09:00"),  # 7 is Sunday
    ("0 9 * * 0", "2024-01-01T00:00", "2024-01-07T09:00"),
    ("0 0 13 * fri", "2024-01-01T00:00", "2024-01-05T00:00"),  # either day field matches
    ("0 0 13 * fri", "2024-01-12T01:00", "2024-01-13T00:00"),
    ("0 0 */10 * *", "2024-01-02T00:00", "2024-01-11T00:00"),  # dom 1, 11, 21, 31
    ("5/20 * * * *", "2024-01-01T00:26", "2024-01-01T00:45"),
    ("0-10/5 1,3 * * *", "2024-01-01T01:10", "2024-01-01T03:00"),
    ("@hourly", "2024-01-01T10:30", "2024-01-01T11:00"),
    ("@daily", "2024-01-01T10:30", "2024-01-02T00:00"),
    ("@weekly", "2024-01-01T10:30", "2024-01-07T00:00"),
    ("@monthly", "2024-01-31T10:30", "2024-02-01T00:00"),
    ("@yearly", "2024-06-01T00:00", "2025-01-01T00:00"),
    ("0 0 * JAN,jul *", "2024-02-01T00:00", "2024-07-01T00:00"),
    ("59 23 31 12 *", "2024-12-31T23:59", "2025-12-31T23:59"),
    ("0 12 * * 1-5/2", "2024-01-02T13:00", "2024-01-03T12:00"),  # Mon, Wed, Fri
]


@pytest.mark.parametrize(("expression", "after", "expected"), NEXT)
def test_next_fire_time(expression: str, after: str, expected: str) -> None:
    cron = CronExpr.parse(expression)
    fire = cron.next_time(at(after), UTC)
    assert show(fire) == expected
    assert cron.matches(dt.datetime.fromtimestamp(fire, UTC))


BAD = [
    ("* * * *", "4 fields"),
    ("* * * * * *", "6 fields"),
    ("60 * * * *", "minute 60 is outside 0-59"),
    ("* 24 * * *", "hour 24 is outside 0-23"),
    ("* * 0 * *", "day of month 0 is outside 1-31"),
    ("* * * 13 *", "month 13 is outside 1-12"),
    ("* * * * 8", "day of week 8 is outside 0-7"),
    ("*/0 * * * *", "step '0'"),
    ("5-1 * * * *", "runs backwards"),
    ("a * * * *", "minute 'a' is not a number"),
    ("1,,2 * * * *", "empty list item"),
    ("* * * foo *", "month 'foo'"),
    ("0 0 30 2 *", "never matches"),
    ("0 0 31 4,6,9,11 *", "never matches"),
    ("", "0 fields"),
]


@pytest.mark.parametrize(("expression", "message"), BAD)
def test_bad_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        CronExpr.parse(expression)


def test_a_cron_expression_must_be_text() -> None:
    with pytest.raises(CronError, match="string"):
        CronExpr.parse(5)  # type: ignore[arg-type]


def test_sets_hold_the_values_of_each_field() -> None:
    cron = CronExpr.parse("0,30 */6 1-3 * sun,sat")
    assert cron.minutes == {0, 30}
    assert cron.hours == {0, 6, 12, 18}
    assert cron.days == {1, 2, 3}
    assert cron.weekdays == {0, 6}
    assert not cron.any_day and not cron.any_weekday


def test_daylight_saving_days_in_a_real_zone() -> None:
    zone = zoneinfo.ZoneInfo("Europe/Copenhagen")
    cron = CronExpr.parse("30 2 * * *")
    # Spring: 02:30 does not exist on 31 March 2024; it fires at 03:30 summer time.
    spring = cron.next_time(at("2024-03-31T00:00", zone), zone)
    assert show(spring, UTC) == "2024-03-31T01:30"
    # Autumn: 02:30 happens twice on 27 October 2024; it fires once.
    first = cron.next_time(at("2024-10-27T00:00", zone), zone)
    assert show(first, UTC) == "2024-10-27T00:30"
    assert show(cron.next_time(first, zone), zone) == "2024-10-28T02:30"
    assert show(cron.next_time(first + 3600, zone), zone) == "2024-10-28T02:30"


def test_a_starred_step_still_restricts_its_day_field() -> None:
    # Vixie cron: "*/10" counts as starred (no either-or), but its days still apply.
    cron = CronExpr.parse("0 0 */10 * fri")
    assert show(cron.next_time(at("2024-01-01T00:00"), UTC)) == "2024-03-01T00:00"
    assert show(cron.next_time(at("2024-06-22T00:00"), UTC)) == "2024-10-11T00:00"
