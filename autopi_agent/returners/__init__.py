"""Returners: where job returns go -- a table of names to import paths, plus entry points.

A returner is an object with ``async send(ret: JobReturn)`` and ``async aclose()``, made
once per agent by a factory ``create(ctx: AgentContext, settings: Mapping) -> Returner``.
``settings`` is the returner's section of the agent config (``returners: {jsonl: {...}}``),
``{}`` when absent. The table (and the ``autopi_agent.returners`` entry-point group) maps a
name to ``package.module`` (its ``create``) or ``package.module:factory``; a builtin name
wins over an entry point. Factories run lazily, at a returner's first use.

The master always gets a job's return (through the durable spool); the names a job gives
(``cloud-master run --return jsonl,syslog``, or a scheduled job's ``returner``) add
returners. ``Returners.deliver`` runs them concurrently, each with its own time limit, and
never raises: a failing or slow returner is logged and does not hold up the others.

Errors::

    ReturnerError                      root
     ├── UnknownReturner (LookupError) no returner of that name, or it failed to load
     └── ReturnerConfigError (ValueError)  a returner's settings are wrong
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import structlog

from autopi_agent.minion.context import AgentContext
from autopi_proto.messages import JobReturn

__all__ = ["BUILTIN_RETURNERS", "DEFAULT_TIMEOUT", "ENTRY_POINT_GROUP", "MASTER_NAMES", "Returner",
           "ReturnerConfigError", "ReturnerError", "ReturnerFactory", "Returners", "UnknownReturner",
           "check_settings", "extra_names", "parse_names"]

# Not ``log``: importing the ``log`` returner module sets that attribute on this package.
_log = structlog.get_logger(__name__)

ENTRY_POINT_GROUP = "autopi_agent.returners"
DEFAULT_TIMEOUT = 10.0

BUILTIN_RETURNERS: Mapping[str, str] = {
    "master": "autopi_agent.returners.master",
    "spool": "autopi_agent.returners.master",
    "jsonl": "autopi_agent.returners.jsonl",
    "syslog": "autopi_agent.returners.syslog",
    "log": "autopi_agent.returners.log",
}
# Names that mean the master's own return, which every job sends anyway.
MASTER_NAMES = frozenset({"master", "spool"})


class ReturnerError(Exception):
    """Root of the returners' errors."""


class UnknownReturner(ReturnerError, LookupError):
    """No returner of that name, or its module failed to load."""


class ReturnerConfigError(ReturnerError, ValueError):
    """A returner's settings (its section under ``returners:``) are wrong."""


class Returner(Protocol):
    """Delivers job returns to one place."""

    async def send(self, ret: JobReturn) -> None:
        """Deliver ``ret``; raise on failure (the caller logs it)."""
        ...

    async def aclose(self) -> None:
        """Release files and sockets; the agent is stopping."""
        ...


ReturnerFactory = Callable[[AgentContext, Mapping[str, Any]], Returner]


def parse_names(spec: str | Sequence[str] | None) -> list[str]:
    """Returner names from ``"a,b"`` (Salt's ``ret``) or a list: stripped, de-duplicated."""
    if not spec:
        return []
    parts = spec.split(",") if isinstance(spec, str) else [str(part) for part in spec]
    return list(dict.fromkeys(part.strip() for part in parts if part.strip()))


def extra_names(spec: str | Sequence[str] | None) -> list[str]:
    """The returners to call besides the master's return (which is always sent)."""
    return [name for name in parse_names(spec) if name not in MASTER_NAMES]


class Returners:
    """One agent's returners by name, made on first use; ``deliver`` fans a return out."""

    def __init__(self, ctx: AgentContext, table: Mapping[str, str] | None = None, *,
                 entry_points: bool = True, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._ctx = ctx
        self._table = dict(BUILTIN_RETURNERS if table is None else table)
        self._use_entry_points = entry_points
        self._entry_points_read = False
        self._timeout = timeout
        self._made: dict[str, Returner] = {}
        self._broken: dict[str, str] = {}

    def names(self) -> list[str]:
        """Every returner name known (builtin and entry points), usable or not."""
        self._read_entry_points()
        return sorted(self._table)

    def get(self, name: str) -> Returner:
        """The returner ``name`` (made now if needed); UnknownReturner if there is none."""
        made = self._made.get(name)
        if made is not None:
            return made
        if name in self._broken:
            raise UnknownReturner(self._broken[name])
        self._read_entry_points()
        path = self._table.get(name)
        if path is None:
            raise UnknownReturner(f"no returner named {name!r}; known: {', '.join(self.names())}")
        try:
            returner = _factory(path)(self._ctx, self._settings(name))
        except ReturnerConfigError:
            raise
        except Exception as err:
            reason = f"returner {name} ({path}) is unavailable: {type(err).__name__}: {err}"
            self._broken[name] = reason
            raise UnknownReturner(reason) from err
        self._made[name] = returner
        return returner

    async def deliver(self, ret: JobReturn, names: Sequence[str]) -> dict[str, str | None]:
        """Send ``ret`` to each named returner at once; per name, None or why it failed."""
        unique = list(dict.fromkeys(names))
        outcomes = await asyncio.gather(*(self._deliver_one(ret, name) for name in unique))
        return dict(zip(unique, outcomes, strict=True))

    async def aclose(self) -> None:
        """Close every returner made so far."""
        made, self._made = self._made, {}
        for name, returner in made.items():
            try:
                await returner.aclose()
            except Exception as err:  # closing one must not stop closing the others
                _log.warning("returner.close_failed", returner=name, error=f"{type(err).__name__}: {err}")

    async def _deliver_one(self, ret: JobReturn, name: str) -> str | None:
        error = await self._attempt(ret, name)
        if error is not None:
            _log.warning("returner.failed", returner=name, jid=ret.jid, fun=ret.fun, error=error)
        return error

    async def _attempt(self, ret: JobReturn, name: str) -> str | None:
        try:
            returner = self.get(name)
            limit = _seconds(self._settings(name).get("timeout", self._timeout), name)
        except ReturnerError as err:
            return str(err)
        try:
            await asyncio.wait_for(returner.send(ret), limit)
        except TimeoutError:
            return f"no answer within {limit:g} s"
        except Exception as err:  # a returner's failure is its own, never the job's
            return f"{type(err).__name__}: {err}"
        return None

    def _settings(self, name: str) -> Mapping[str, Any]:
        section = (self._ctx.opts.get("returners") or {}).get(name) or {}
        if not isinstance(section, Mapping):
            raise ReturnerConfigError(f"returners.{name} must be a mapping of settings, "
                                      f"not {type(section).__name__}")
        return section

    def _read_entry_points(self) -> None:
        if self._entry_points_read or not self._use_entry_points:
            return
        self._entry_points_read = True
        from importlib.metadata import entry_points  # only when a returner is looked up

        for point in entry_points(group=ENTRY_POINT_GROUP):
            if point.name in self._table:
                _log.warning("returner.entry_point_shadowed", returner=point.name, path=point.value)
                continue
            self._table[point.name] = point.value


def check_settings(name: str, settings: Mapping[str, Any], known: Sequence[str]) -> None:
    """Raise ReturnerConfigError for a key of ``returners.NAME`` the returner does not take."""
    unknown = sorted(set(settings) - {*known, "timeout"})
    if unknown:
        raise ReturnerConfigError(f"returners.{name}: unknown setting(s) {', '.join(unknown)}; "
                                  f"known: {', '.join(sorted({*known, 'timeout'}))}")


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ReturnerConfigError(f"returners.{name}.timeout: expected seconds above 0, "
                                  f"got {value!r}")
    return float(value)


def _factory(path: str) -> ReturnerFactory:
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name.strip())
    factory = getattr(module, attr.strip() or "create")
    if not callable(factory):
        raise TypeError(f"{path} is not callable")
    return factory  # type: ignore[no-any-return]
