"""Cron expressions (minute hour day-of-month month day-of-week) and their next fire time.

The five fields take ``*``, numbers, ranges ``a-b``, steps ``*/n``, ``a-b/n`` and ``a/n``
(``a`` to the field's end), and comma-separated lists of those; months and weekdays also
take English names (``jan``, ``mon``), and weekday 7 is Sunday like 0. The macros
``@yearly``, ``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight`` and
``@hourly`` stand for their usual expressions. As in Vixie cron (crontab(5)), when both
day fields are restricted (neither starts with ``*``) a day matches if either does.

Times are wall-clock times in the zone given (the host's local zone by default). A time
that the spring daylight-saving jump skips fires an hour later; the hour repeated in autumn
runs once (its first pass).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

__all__ = ["CronError", "CronExpr"]

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Years searched for a match before an expression is declared impossible: a 29 February
# that must also be, say, a Monday needs up to 28 years; every other case needs under 8.
_SEARCH_YEARS = 30
_ONE_MINUTE = dt.timedelta(minutes=1)


class CronError(ValueError):
    """A cron expression that cannot be parsed or never matches a date."""


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day of week", 0, 7, _WEEKDAYS),
)


def _number(text: str, field: _Field) -> int:
    lowered = text.lower()
    if field.names and lowered in field.names:
        return field.names.index(lowered) + (1 if field is _FIELDS[3] else 0)
    if not text.isdigit():
        raise CronError(f"{field.name} {text!r} is not a number")
    value = int(text)
    if not field.low <= value <= field.high:
        raise CronError(f"{field.name} {value} is outside {field.low}-{field.high}")
    return value


def _part(text: str, field: _Field) -> range:
    base, slash, step_text = text.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) == 0:
            raise CronError(f"{field.name} step {step_text!r} must be a whole number above 0")
        step = int(step_text)
    if base == "*":
        return range(field.low, field.high + 1, step)
    first_text, dash, last_text = base.partition("-")
    first = _number(first_text, field)
    if dash:
        last = _number(last_text, field)
    else:
        last = field.high if slash else first
    if last < first:
        raise CronError(f"{field.name} range {base!r} runs backwards")
    return range(first, last + 1, step)


def _parse_field(text: str, field: _Field) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field.name} {text!r} has an empty list item")
        values.update(_part(part, field))
    if field is _FIELDS[4] and 7 in values:  # 7 is Sunday, like 0
        values = (values - {7}) | {0}
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class CronExpr:
    """A parsed cron expression; ``text`` is what the user wrote."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 is Sunday
    any_day: bool  # the day-of-month field starts with '*'
    any_weekday: bool  # the day-of-week field starts with '*'

    @classmethod
    def parse(cls, text: str) -> CronExpr:
        """Parse ``text`` or raise CronError saying which field is wrong and why."""
        if not isinstance(text, str):
            raise CronError(f"a cron expression is a string such as '*/5 * * * *', "
                            f"not {type(text).__name__}")
        expanded = _MACROS.get(text.strip().lower(), text)
        fields = expanded.split()
        if len(fields) != 5:
            raise CronError(f"cron expression {text!r} has {len(fields)} fields; expected 5: "
                            "minute hour day-of-month month day-of-week")
        try:
            sets = [_parse_field(part, spec) for part, spec in zip(fields, _FIELDS, strict=True)]
        except CronError as err:
            raise CronError(f"cron expression {text!r}: {err}") from None
        minutes, hours, days, months, weekdays = sets
        expr = cls(text, minutes, hours, days, months, weekdays,
                   any_day=fields[2].startswith("*"), any_weekday=fields[4].startswith("*"))
        expr._next_after(dt.datetime(2000, 1, 1))  # reject what never fires (30 February)
        return expr

    def day_matches(self, day: dt.date) -> bool:
        """Whether ``day`` is one of the expression's days (month, day and weekday fields)."""
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = day.isoweekday() % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return in_days and in_weekdays
        return in_days or in_weekdays

    def matches(self, moment: dt.datetime) -> bool:
        """Whether the expression fires in ``moment``'s minute."""
        return (moment.minute in self.minutes and moment.hour in self.hours
                and self.day_matches(moment.date()))

    def next_time(self, after: float, tz: dt.tzinfo | None = None) -> float:
        """The first fire time (seconds since the epoch) strictly after ``after``.

        ``tz`` None means the host's local time zone.
        """
        moment = self._next_after(dt.datetime.fromtimestamp(after, tz))
        stamp = moment.timestamp()
        while stamp <= after:  # a wall time repeated when clocks go back
            moment = self._next_after(moment)
            stamp = moment.timestamp()
        return stamp

    def _next_after(self, start: dt.datetime) -> dt.datetime:
        moment = start.replace(second=0, microsecond=0) + _ONE_MINUTE
        limit = moment.year + _SEARCH_YEARS
        while moment.year <= limit:
            if not self.day_matches(moment.date()):
                moment = _next_day(moment)
                continue
            if moment.hour not in self.hours:
                moment = moment.replace(minute=0) + dt.timedelta(hours=1)
                continue
            later = [minute for minute in self.minutes if minute >= moment.minute]
            if not later:
                moment = moment.replace(minute=0) + dt.timedelta(hours=1)
                continue
            return moment.replace(minute=min(later))
        raise CronError(f"cron expression {self.text!r} never matches a date")


def _next_day(moment: dt.datetime) -> dt.datetime:
    return moment.replace(hour=0, minute=0) + dt.timedelta(days=1)
