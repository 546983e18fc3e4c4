"""Scheduled job definitions in Salt's ``schedule`` shape, checked into JobSpec values.

Errors::

    ScheduleError                      root of the scheduler's errors
     └── InvalidJob (ValueError)       a job definition that cannot run; names the job and key

A schedule is a mapping of job names to definitions; the keys ``enabled`` and ``splay`` at
its top level are settings for every job (as in Salt). Keys of a definition:

=============== ==================================================================
function        ``module.function`` to run (Salt's aliases ``func`` and ``fun`` too)
args, kwargs    its positional arguments (a list) and keyword arguments (a mapping)
seconds, minutes, hours, days
                run every so often (they add up); not together with ``cron``
cron            a five-field cron expression, in the host's time zone
splay           delay each run by a random 0..N seconds, or ``{start: A, end: B}``
enabled         false keeps the job without running it (default true)
returner        returner name(s) (a list or comma-separated) that also get the result
return_job      send the result to the master (default true)
run_on_start    also run when the agent starts (default true for interval jobs)
maxrunning      runs of this job allowed at once; a due run beyond it is skipped (1)
jid_include     list the run in saltutil.running (default true)
metadata        a mapping kept with the job, for people
name            ignored (Salt repeats the job's name here)
=============== ==================================================================

Keys starting with ``_`` are Salt's bookkeeping and are ignored. Salt's ``when``,
``once``, ``range``, ``until``, ``after`` and skip keys are refused with an error saying so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autopi_agent.minion.cron import CronError, CronExpr

__all__ = ["GLOBAL_KEYS", "TIME_KEYS", "InvalidJob", "JobSpec", "ScheduleError", "ScheduleSettings",
           "Splay", "check_schedule", "parse_job", "parse_schedule", "split_schedule"]

TIME_KEYS = ("seconds", "minutes", "hours", "days")
_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
GLOBAL_KEYS = frozenset({"enabled", "splay"})
_FUNCTION_KEYS = ("function", "func", "fun")
_KNOWN = frozenset({*_FUNCTION_KEYS, *TIME_KEYS, "cron", "splay", "args", "kwargs", "enabled",
                    "returner", "return_job", "run_on_start", "maxrunning", "jid_include",
                    "metadata", "name"})
_SALT_ONLY = frozenset({"when", "once", "once_fmt", "range", "until", "after", "skip_during_range",
                        "run_after_skip_range", "skip_explicit", "run_explicit", "return_config",
                        "return_kwargs", "time_fmt", "skip_function"})


class ScheduleError(Exception):
    """Root of the scheduler's errors."""


class InvalidJob(ScheduleError, ValueError):
    """A scheduled job definition that cannot run; the message names the job and the key."""


@dataclass(frozen=True, slots=True)
class Splay:
    """A random delay of ``start`` to ``end`` seconds added to each run."""

    start: float
    end: float


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    """The settings of a whole schedule (its top-level ``enabled`` and ``splay``)."""

    enabled: bool | None = None
    splay: Splay | None = None


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One checked job; ``definition`` is its definition as written (for listing and saving)."""

    name: str
    function: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    interval: float | None
    cron: CronExpr | None
    splay: Splay | None
    enabled: bool
    returners: tuple[str, ...]
    return_job: bool
    run_on_start: bool
    maxrunning: int
    jid_include: bool
    definition: dict[str, Any] = field(compare=False)

    def wire_args(self) -> list[Any]:
        """The arguments as Salt wire args for the dispatcher."""
        wire: list[Any] = list(self.args)
        if self.kwargs:
            wire.append({"__kwarg__": True, **self.kwargs})
        return wire

    def same_timing(self, other: JobSpec) -> bool:
        """Whether ``other`` fires at the same times (so a running timer can be kept)."""
        return (self.interval == other.interval and self.splay == other.splay
                and (self.cron.text if self.cron else None) == (other.cron.text if other.cron else None)
                and self.run_on_start == other.run_on_start)


class _Bad(Exception):
    """A key's value is wrong; carries the key and what was expected."""

    def __init__(self, key: str, expected: str, value: Any) -> None:
        super().__init__(f"key '{key}': expected {expected}, got {value!r:.120}")


def _seconds(key: str, value: Any, *, allow_zero: bool = True) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _Bad(key, "a number of seconds", value) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Bad(key, "a number", value)
    if value < 0 or (value == 0 and not allow_zero):
        raise _Bad(key, "a number of 0 or more" if allow_zero else "a number above 0", value)
    return float(value) * _UNITS.get(key, 1)


def _flag(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _Bad(key, "true or false", value)


def _splay(value: Any) -> Splay | None:
    if isinstance(value, Mapping):
        if set(value) != {"start", "end"}:
            raise _Bad("splay", "a number of seconds or {start: A, end: B}", value)
        start, end = _seconds("splay", value["start"]), _seconds("splay", value["end"])
        if end < start:
            raise _Bad("splay", "an end not below its start", value)
        return Splay(start, end)
    seconds = _seconds("splay", value)
    return Splay(0.0, seconds) if seconds else None


def _returners(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        names = [name.strip() for name in value.split(",")]
    elif isinstance(value, list) and all(isinstance(name, str) for name in value):
        names = [name.strip() for name in value]
    else:
        raise _Bad("returner", "a returner name, or a list of them", value)
    return tuple(dict.fromkeys(name for name in names if name))


def _function(definition: Mapping[str, Any]) -> str:
    given = [key for key in _FUNCTION_KEYS if key in definition]
    if not given:
        raise InvalidJob("no 'function' given (the module.function to run)")
    if len(given) > 1:
        raise InvalidJob(f"function given twice ({', '.join(given)}); keep 'function'")
    value = definition[given[0]]
    module, dot, name = value.partition(".") if isinstance(value, str) else ("", "", "")
    if not (module and dot and name):
        raise _Bad(given[0], "a function name such as 'test.ping'", value)
    return str(value)


def _timing(definition: Mapping[str, Any]) -> tuple[float | None, CronExpr | None]:
    times = [key for key in TIME_KEYS if key in definition]
    if times and "cron" in definition:
        raise InvalidJob(f"both 'cron' and '{times[0]}' given; time a job one way")
    if "cron" in definition:
        try:
            return None, CronExpr.parse(definition["cron"])
        except CronError as err:
            raise InvalidJob(f"key 'cron': {err}") from None
    if not times:
        raise InvalidJob("no timing given: add 'seconds', 'minutes', 'hours', 'days' or 'cron'")
    interval = sum(_seconds(key, definition[key]) for key in times)
    if interval <= 0:
        raise _Bad(times[0], "an interval above 0 seconds in all", definition[times[0]])
    return interval, None


def _plain(key: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise _Bad(key, "strings, numbers, booleans, null, lists and mappings only",
                   value) from None


def _checked_keys(definition: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in definition.items():
        if not isinstance(key, str):
            raise InvalidJob(f"a key that is not a string: {key!r}")
        if key.startswith("_"):
            continue
        if key in _SALT_ONLY:
            raise InvalidJob(f"key '{key}': Salt's '{key}' is not supported by this agent; "
                             "time jobs with seconds/minutes/hours/days or cron")
        if key not in _KNOWN:
            raise InvalidJob(f"key '{key}' is unknown; known keys: {', '.join(sorted(_KNOWN))}")
        kept[key] = value
    kept.pop("name", None)
    return kept


def parse_job(name: str, definition: Any, default_splay: Splay | None = None) -> JobSpec:
    """Check one job definition; raises InvalidJob ``schedule job 'NAME': ...``."""
    try:
        return _parse(name, definition, default_splay)
    except (_Bad, InvalidJob) as err:
        raise InvalidJob(f"schedule job '{name}': {err}") from None


def _parse(name: str, definition: Any, default_splay: Splay | None) -> JobSpec:
    if not name or not isinstance(name, str):
        raise InvalidJob("a job needs a non-empty string as its name")
    if not isinstance(definition, Mapping):
        raise InvalidJob(f"expected a mapping of settings, got {type(definition).__name__}")
    kept = _checked_keys(definition)
    interval, cron = _timing(kept)
    args = kept.get("args", [])
    if not isinstance(args, list):
        raise _Bad("args", "a list", args)
    kwargs = kept.get("kwargs", {})
    if not isinstance(kwargs, Mapping) or not all(isinstance(key, str) for key in kwargs):
        raise _Bad("kwargs", "a mapping of argument names to values", kwargs)
    _plain("args", args)
    _plain("kwargs", dict(kwargs))
    metadata = kept.get("metadata", {})
    if not isinstance(metadata, Mapping):
        raise _Bad("metadata", "a mapping", metadata)
    _plain("metadata", dict(metadata))
    maxrunning = kept.get("maxrunning", 1)
    if isinstance(maxrunning, bool) or not isinstance(maxrunning, int) or maxrunning < 1:
        raise _Bad("maxrunning", "a whole number of 1 or more", maxrunning)
    return JobSpec(
        name=name, function=_function(kept), args=tuple(args), kwargs=dict(kwargs),
        interval=interval, cron=cron,
        splay=_splay(kept["splay"]) if "splay" in kept else default_splay,
        enabled=_flag("enabled", kept.get("enabled", True)),
        returners=_returners(kept.get("returner", [])),
        return_job=_flag("return_job", kept.get("return_job", True)),
        run_on_start=_flag("run_on_start", kept.get("run_on_start", interval is not None)),
        maxrunning=maxrunning, jid_include=_flag("jid_include", kept.get("jid_include", True)),
        definition=kept,
    )


def split_schedule(schedule: Any, source: str = "schedule"
                   ) -> tuple[ScheduleSettings, dict[str, Any]]:
    """The settings and the raw job definitions of a schedule mapping."""
    if schedule is None:
        return ScheduleSettings(), {}
    if not isinstance(schedule, Mapping):
        raise InvalidJob(f"{source} must be a mapping of job names to definitions, "
                         f"not {type(schedule).__name__}")
    try:
        enabled = _flag("enabled", schedule["enabled"]) if "enabled" in schedule else None
        splay = _splay(schedule["splay"]) if "splay" in schedule else None
    except _Bad as err:
        raise InvalidJob(f"{source}: {err}") from None
    for key in ("skip_function", "skip_during_range", "loop_interval"):
        if key in schedule:
            raise InvalidJob(f"{source}: key '{key}': Salt's '{key}' is not supported by this agent")
    jobs = {str(name): value for name, value in schedule.items() if name not in GLOBAL_KEYS}
    return ScheduleSettings(enabled, splay), jobs


def parse_schedule(schedule: Any, source: str = "schedule"
                   ) -> tuple[ScheduleSettings, dict[str, JobSpec], list[str]]:
    """Every job of ``schedule`` that is valid, and the errors of those that are not."""
    settings, raw = split_schedule(schedule, source)
    jobs: dict[str, JobSpec] = {}
    errors: list[str] = []
    for name, definition in raw.items():
        try:
            jobs[name] = parse_job(name, definition, settings.splay)
        except InvalidJob as err:
            errors.append(str(err))
    return settings, jobs, errors


def check_schedule(value: Any) -> str | None:
    """For the config schema: None when ``value`` is a valid schedule, else what is wrong."""
    try:
        _, _, errors = parse_schedule(value)
    except InvalidJob as err:
        return f"a valid schedule ({err})"
    return f"a valid schedule ({'; '.join(errors)})" if errors else None
