"""Execution module ``loggers``: what the telemetry loggers are doing, and which are defined.

Loggers run inside the agent daemon (``autopi-agent serve``; see
``autopi_agent.minion.loggers``). Asked of a running agent, ``loggers.status`` reports each
logger's state and counters; asked locally (``autopi-agent call``) it says that no logger
runs in that process and lists the ones the config and the cached pillar define.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.errors import CommandExecutionError
from autopi_agent.minion.logger_spec import LoggerSpec, parse_loggers
from autopi_agent.minion.loggers import Gate, Logger, LoggerSet

__all__ = ["list_", "status"]

NOT_RUNNING = ("no logger runs here: loggers run in the agent daemon (autopi-agent serve); "
               "these are the ones it would start")


def _running(ctx: AgentContext) -> LoggerSet | None:
    loggers = ctx.services.get("loggers")
    return loggers if isinstance(loggers, LoggerSet) else None


def _gate_reason(spec: LoggerSpec, gate: Gate | None) -> str | None:
    """Why ``gate`` holds a logger with ``spec`` back now (``engine_off``, ``adapter_gone``)."""
    if gate is None or spec.requires == "none":
        return None
    if not gate.adapter_present:
        return "adapter_gone"
    if spec.requires == "engine" and gate.engine_running is False:
        return "engine_off"
    return None


def _definition(spec: LoggerSpec, source: str) -> dict[str, Any]:
    return {"function": spec.function, "args": list(spec.arg), "interval": spec.interval,
            "requires": spec.requires, "enabled": spec.enabled, "series": spec.series,
            "source": source}


def _state_declared(ctx: AgentContext) -> Mapping[str, Any]:
    """The loggers ``obd.logger`` states declared (kept in the agent's cache)."""
    managed = ctx.services.get("managed_loggers")
    if managed is None:
        from autopi_agent.state.managed_loggers import ManagedLoggers

        managed = ManagedLoggers(str(ctx.opts.get("cachedir", "cache")))
    declared: Mapping[str, Any] = managed.load()
    return declared


async def _pillar(ctx: AgentContext) -> Mapping[str, Any]:
    pillar: Any = ctx.services.get("pillar")
    if not isinstance(pillar, Mapping):
        from autopi_agent.state.sources import cached_pillar

        pillar = await asyncio.to_thread(cached_pillar, ctx)
    found: Mapping[str, Any] = pillar
    return found


async def _defined(ctx: AgentContext) -> tuple[dict[str, tuple[LoggerSpec, str]], list[str]]:
    """Each logger in force with where it comes from (``config`` over ``state`` over
    ``pillar``), and the errors of the invalid definitions."""
    config, errors = parse_loggers(ctx.opts.get("loggers"))
    declared, state_errors = parse_loggers(await asyncio.to_thread(_state_declared, ctx),
                                           "state loggers")
    running = _running(ctx)
    if running is not None:
        specs, errors = running.specs(), [*state_errors, *running.errors]
    else:
        pillar, pillar_errors = parse_loggers((await _pillar(ctx)).get("loggers"),
                                              "pillar loggers")
        specs = {**pillar, **declared, **config}
        errors += state_errors + pillar_errors
    sources = {name: "config" if name in config else "state" if name in declared else "pillar"
               for name in specs}
    return {name: (spec, sources[name]) for name, spec in sorted(specs.items())}, errors


def _state(spec: LoggerSpec, logger: Logger | None, gate: Gate | None) -> dict[str, Any]:
    if logger is None:
        return {"state": "stopped", "reads": 0, "samples": 0, "failures": 0, "last_error": None,
                "gate_reason": None}
    counters = logger.status()
    reason = _gate_reason(spec, gate) if logger.state == "gated" else None
    return {"state": logger.state, "reads": counters["reads"], "samples": counters["samples"],
            "failures": counters["failures"], "last_error": counters["last_error"],
            "gate_reason": reason}


def _pick(found: dict[str, Any], name: str | None) -> dict[str, Any]:
    if name is None:
        return found
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise CommandExecutionError(f"no logger named {name!r} (defined: {known})")
    return {name: found[name]}


async def _spool_figures(ctx: AgentContext) -> dict[str, int] | None:
    spool = ctx.services.get("spool")
    stats = getattr(spool, "stats", None)
    if stats is None:
        return None
    figures = await asyncio.to_thread(stats)
    return {"telemetry_waiting": int(figures.count.get("telemetry", 0)),
            "telemetry_dropped": int(figures.dropped_total.telemetry)}


async def status(ctx: AgentContext, name: str | None = None) -> dict[str, Any]:
    """Each telemetry logger's state and counters.

    name
        One logger's name; all when not given.

    ``state`` is ``running``, ``gated`` (paused: ``gate_reason`` says why, ``engine_off``
    or ``adapter_gone``), ``failing`` (its reads fail; ``last_error`` has the last error,
    ``failures`` how many in a row) or ``stopped`` (disabled, or not started). ``samples``
    counts the samples written to the spool since the agent started. ``spool`` tells how
    many samples wait for the master and how many were dropped when the spool was full.

    Without a running agent (``autopi-agent call``) the answer has ``running: false`` and
    lists the loggers the agent would start, each ``stopped``.

    CLI Example::

        cloud-master run car-0001 loggers.status
        cloud-master run car-0001 loggers.status engine
        autopi-agent call loggers.status
    """
    defined, errors = await _defined(ctx)
    running = _running(ctx)
    gate = running.gate if running is not None else None
    found = {}
    for logger_name, (spec, source) in defined.items():
        active = running.loggers.get(logger_name) if running is not None else None
        found[logger_name] = {**_definition(spec, source), **_state(spec, active, gate)}
    answer: dict[str, Any] = {"running": running is not None, "loggers": _pick(found, name),
                              "errors": errors}
    if running is None:
        answer["comment"] = NOT_RUNNING
    spool = await _spool_figures(ctx) if running is not None else None
    if spool is not None:
        answer["spool"] = spool
    return answer


async def list_(ctx: AgentContext) -> dict[str, Any]:
    """The loggers defined in the agent config, by ``obd.logger`` states and in the pillar
    (on a name clash the config wins, then the state), with their function, arguments,
    interval, gating, whether they are enabled, and where each comes from (``source``).

    CLI Example::

        cloud-master run car-0001 loggers.list
        autopi-agent call loggers.list
    """
    defined, _errors = await _defined(ctx)
    return {name: _definition(spec, source) for name, (spec, source) in defined.items()}
