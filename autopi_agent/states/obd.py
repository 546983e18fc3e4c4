"""State module ``obd``: declarative telemetry loggers (``obd.logger``, ``obd.logger_absent``).

A logger declared here has the keys of a ``loggers:`` config entry (see
``autopi_agent.minion.logger_spec``), is checked by the same parser (an error names the
key), and is kept in ``cachedir/loggers/managed.yaml``. A running agent starts, changes or
stops it at once, without a restart. When the agent config defines a logger of the same
name, the config's definition is the one that runs (config > states > pillar).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from autopi_agent.minion.logger_spec import InvalidLogger, parse_logger
from autopi_agent.state.context import StateContext, state_return
from autopi_agent.state.managed_loggers import ManagedLoggers

__all__ = ["logger", "logger_absent"]

log = structlog.get_logger(__name__)


def logger(ctx: StateContext, name: str, interval: Any = None, pids: Any = None,
           function: str | None = None, args: Any = None, kwargs: Any = None,
           threshold: Any = None, max_interval: Any = None, series: str | None = None,
           value_key: str | None = None, requires: str | None = None,
           enabled: Any = None, timeout: Any = None,
           max_backoff: Any = None) -> dict[str, Any]:
    """Run the telemetry logger ``name``: ``function`` (default obd.query_many) with ``pids``
    every ``interval`` seconds; ``threshold``/``max_interval`` filter unchanged values,
    ``requires`` is engine, adapter or none, ``enabled: False`` keeps it stopped.

    SLS example::

        engine_fast:
          obd.logger:
            - pids: [RPM, SPEED, COOLANT_TEMP]
            - interval: 1
    """
    given = {"function": function, "pids": pids, "args": args, "kwargs": kwargs,
             "interval": interval, "threshold": threshold, "max_interval": max_interval,
             "series": series, "value_key": value_key, "requires": requires,
             "enabled": enabled, "timeout": timeout, "max_backoff": max_backoff}
    definition = {key: value for key, value in given.items() if value is not None}
    try:
        parse_logger(name, definition)
    except InvalidLogger as err:
        return state_return(name, False, str(err))
    store = _store(ctx)
    old = store.load().get(name)
    note = _shadowed(ctx, name)
    if old == definition:
        return state_return(name, True, f"Logger {name} is already as specified{note}")
    changes = {"old": old, "new": definition}
    verb = "changed" if old is not None else "added"
    if ctx.test:
        return state_return(name, None, f"Logger {name} would be {verb}{note}", changes)
    store.put(name, definition)
    _reload(ctx)
    return state_return(name, True, f"Logger {name} {verb}{note}", changes)


def logger_absent(ctx: StateContext, name: str) -> dict[str, Any]:
    """Stop and forget the logger ``name`` declared by a state (config and pillar loggers
    are not touched)."""
    store = _store(ctx)
    old = store.load().get(name)
    if old is None:
        return state_return(name, True, f"Logger {name} is not declared by a state")
    changes = {"old": old, "new": None}
    if ctx.test:
        return state_return(name, None, f"Logger {name} would be removed", changes)
    store.remove(name)
    _reload(ctx)
    return state_return(name, True, f"Logger {name} removed", changes)


def _store(ctx: StateContext) -> ManagedLoggers:
    store = ctx.agent.services.get("managed_loggers")
    if isinstance(store, ManagedLoggers):
        return store
    return ManagedLoggers(ctx.agent.opts.get("cachedir", "cache"))


def _shadowed(ctx: StateContext, name: str) -> str:
    config = ctx.agent.opts.get("loggers")
    if isinstance(config, Mapping) and name in config:
        return " (the agent config defines a logger of this name, which takes precedence)"
    return ""


def _reload(ctx: StateContext) -> None:
    loggers = ctx.agent.services.get("loggers")
    reload = getattr(loggers, "reload", None)
    if callable(reload):
        reload()
        log.info("loggers.reload_requested")
