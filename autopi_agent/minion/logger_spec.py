"""Telemetry logger definitions (``loggers:`` in the agent config and the pillar), checked.

A logger reads one execution function every ``interval`` seconds and keeps what it
returns as telemetry samples. Keys of a definition:

============= ============================================================================
function      ``module.function`` to call (default ``obd.query_many``)
pids          the commands to read, for ``obd.query_many`` (a list or ``"RPM, SPEED"``)
args, kwargs  other functions' arguments (a list and a mapping)
interval      seconds between reads (required, above 0)
threshold     keep a value only when it moved by more than this since the last value
              kept: a number (absolute, in the value's unit) or ``"5%"`` (relative)
max_interval  seconds: keep a value at least this often even when it did not move
series        series name, or prefix for several (default ``obd`` for obd.query_many,
              else the function name): ``obd.RPM``
value_key     the key of the value in a reading (default ``value``; obd.battery: ``voltage``)
requires      ``engine`` (pause while the engine is off), ``adapter`` (pause while no OBD
              adapter is present) or ``none``; default ``engine`` for obd.query_many and
              obd.query, ``adapter`` for other ``obd.*`` functions, else ``none``
enabled       false keeps the definition without running it
timeout       seconds one read may take (default 30)
max_backoff   seconds: the longest wait between retries after failures (default 60)
============= ============================================================================

Without ``threshold`` and ``max_interval`` every value read is kept; with only
``max_interval``, a value is kept when it changed at all or that much time passed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_FUNCTION", "InvalidLogger", "LoggerSpec", "check_loggers", "parse_logger",
           "parse_loggers"]

DEFAULT_FUNCTION = "obd.query_many"
_REQUIRES = ("engine", "adapter", "none")
_KNOWN = ("function", "pids", "args", "kwargs", "interval", "threshold", "max_interval", "series",
          "value_key", "requires", "enabled", "timeout", "max_backoff")


class InvalidLogger(ValueError):
    """A logger definition that cannot run; the message names the logger and the key."""


@dataclass(frozen=True, slots=True)
class LoggerSpec:
    """One checked logger; ``arg`` is the call's Salt wire arguments, built once."""

    name: str
    function: str
    arg: tuple[Any, ...]
    interval: float
    threshold: float | None
    percent: bool
    max_interval: float | None
    series: str
    value_key: str
    requires: str
    enabled: bool
    timeout: float
    max_backoff: float

    @property
    def filtered(self) -> bool:
        """Whether values are kept only when they changed (or ``max_interval`` passed)."""
        return self.threshold is not None or self.max_interval is not None


def _number(key: str, value: Any, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidLogger(f"key '{key}': expected a number, got {value!r:.80}")
    if value < 0 or (positive and value == 0):
        raise InvalidLogger(f"key '{key}': expected a number {'above' if positive else 'of'} 0"
                            f"{'' if positive else ' or more'}, got {value!r}")
    return float(value)


def _threshold(value: Any) -> tuple[float | None, bool]:
    if value is None:
        return None, False
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return _number("threshold", float(value.strip()[:-1]), positive=False), True
        except ValueError:
            pass
        raise InvalidLogger(f"key 'threshold': expected a number or a percentage such as '5%', "
                            f"got {value!r}")
    return _number("threshold", value, positive=False), False


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        names = [part.strip() for part in value.split(",")]
    elif isinstance(value, list) and all(isinstance(part, str) for part in value):
        names = [part.strip() for part in value]
    else:
        raise InvalidLogger(f"key 'pids': expected a list of command names, got {value!r:.80}")
    names = [name for name in names if name]
    if not names:
        raise InvalidLogger("key 'pids': expected at least one command name, such as RPM")
    return names


def _arguments(definition: Mapping[str, Any], function: str) -> tuple[Any, ...]:
    if "pids" in definition and "args" in definition:
        raise InvalidLogger("both 'pids' and 'args' given; 'pids' are the arguments")
    args = _names(definition["pids"]) if "pids" in definition else definition.get("args", [])
    if not isinstance(args, list):
        raise InvalidLogger(f"key 'args': expected a list, got {args!r:.80}")
    if function == DEFAULT_FUNCTION and not args:
        raise InvalidLogger(f"no 'pids' given: {DEFAULT_FUNCTION} needs the commands to read, "
                            "such as [RPM, SPEED]")
    kwargs = definition.get("kwargs", {})
    if not isinstance(kwargs, Mapping) or not all(isinstance(key, str) for key in kwargs):
        raise InvalidLogger(f"key 'kwargs': expected a mapping, got {kwargs!r:.80}")
    return (*args, {"__kwarg__": True, **kwargs}) if kwargs else tuple(args)


def _default_requires(function: str) -> str:
    if function in (DEFAULT_FUNCTION, "obd.query"):
        return "engine"
    return "adapter" if function.startswith("obd.") else "none"


def _text(definition: Mapping[str, Any], key: str, default: str) -> str:
    value = definition.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise InvalidLogger(f"key '{key}': expected a non-empty string, got {value!r:.80}")
    return value.strip()


def _parse(name: str, definition: Any) -> LoggerSpec:
    if not isinstance(definition, Mapping):
        raise InvalidLogger(f"expected a mapping of settings, got {type(definition).__name__}")
    unknown = sorted(str(key) for key in definition if key not in _KNOWN)
    if unknown:
        raise InvalidLogger(f"key '{unknown[0]}' is unknown; known keys: {', '.join(_KNOWN)}")
    function = _text(definition, "function", DEFAULT_FUNCTION)
    if "." not in function.strip("."):
        raise InvalidLogger(f"key 'function': expected a name such as obd.query_many, "
                            f"got {function!r}")
    if "interval" not in definition:
        raise InvalidLogger("no 'interval' given: the seconds between reads")
    interval = _number("interval", definition["interval"])
    threshold, percent = _threshold(definition.get("threshold"))
    max_interval = definition.get("max_interval")
    if max_interval is not None and _number("max_interval", max_interval) < interval:
        raise InvalidLogger(f"key 'max_interval': expected at least the interval ({interval:g} s), "
                            f"got {max_interval!r}")
    requires = _text(definition, "requires", _default_requires(function))
    if requires not in _REQUIRES:
        raise InvalidLogger(f"key 'requires': expected one of {', '.join(_REQUIRES)}, "
                            f"got {requires!r}")
    enabled = definition.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidLogger(f"key 'enabled': expected true or false, got {enabled!r}")
    return LoggerSpec(
        name=name, function=function, arg=_arguments(definition, function), interval=interval,
        threshold=threshold, percent=percent,
        max_interval=None if max_interval is None else float(max_interval),
        series=_text(definition, "series", "obd" if function == DEFAULT_FUNCTION else function),
        value_key=_text(definition, "value_key", "value"), requires=requires, enabled=enabled,
        timeout=_number("timeout", definition.get("timeout", 30.0)),
        max_backoff=max(interval, _number("max_backoff", definition.get("max_backoff", 60.0))),
    )


def parse_logger(name: str, definition: Any) -> LoggerSpec:
    """Check one logger definition; raises InvalidLogger ``logger 'NAME': ...``."""
    try:
        return _parse(name, definition)
    except InvalidLogger as err:
        raise InvalidLogger(f"logger '{name}': {err}") from None


def parse_loggers(loggers: Any, source: str = "loggers") -> tuple[dict[str, LoggerSpec], list[str]]:
    """The valid loggers of a ``loggers`` mapping, and the errors of the others."""
    if loggers is None:
        return {}, []
    if not isinstance(loggers, Mapping):
        return {}, [f"{source} must be a mapping of logger names to definitions, "
                    f"not {type(loggers).__name__}"]
    specs: dict[str, LoggerSpec] = {}
    errors: list[str] = []
    for name, definition in loggers.items():
        try:
            specs[str(name)] = parse_logger(str(name), definition)
        except InvalidLogger as err:
            errors.append(str(err))
    return specs, errors


def check_loggers(value: Any) -> str | None:
    """For the config schema: None when ``value`` is a valid ``loggers`` mapping."""
    _, errors = parse_loggers(value)
    return f"valid loggers ({'; '.join(errors)})" if errors else None
