"""Execution module ``mine``: share function results with other agents through the master.

Agents send the results of the functions listed in ``mine_functions`` (agent config or
pillar, as in Salt) every ``mine_interval`` minutes; the master keeps the latest value of
each, and any agent reads them with ``mine.get``::

    mine_functions:
      grains.items: []
      vin: {mine_function: obd.vin}
    mine_interval: 60
"""

from __future__ import annotations

from typing import Any

import structlog

from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.errors import CommandExecutionError
from autopi_agent.minion.mine import MineFunction, parse_mine_functions, wrap_acl

__all__ = ["delete", "flush", "get", "send", "update", "valid"]

log = structlog.get_logger(__name__)


def _master_call(ctx: AgentContext, load: dict[str, Any]) -> Any:
    master_call = ctx.services.get("master_call")
    if master_call is None:
        raise CommandExecutionError(f"{load['cmd'].lstrip('_').replace('_', '.')} needs a "
                                    "master: this is a local call")
    return master_call(load, None, float(ctx.opts.get("return_timeout", 60)))


def _configured(ctx: AgentContext) -> list[MineFunction]:
    merged: dict[str, Any] = {}
    pillar = ctx.services.get("pillar")
    for source in (ctx.opts.get("mine_functions"),
                   pillar.get("mine_functions") if isinstance(pillar, dict) else None):
        if isinstance(source, list):
            source = {str(name): [] for name in source}
        if isinstance(source, dict):
            merged.update(source)
    try:
        return parse_mine_functions(merged)
    except ValueError as err:
        raise CommandExecutionError(f"mine: {err}") from err


def _call(ctx: AgentContext, entry: MineFunction) -> Any:
    return ctx.call(entry.function, *entry.args, **dict(entry.kwargs))


def update(ctx: AgentContext, clear: bool = False,
           mine_functions: dict[str, Any] | list[str] | None = None) -> bool | None:
    """Run the configured mine functions (``mine_functions`` of the agent config, then the
    pillar's) and send their results to the master. A function that fails is logged and
    left out. ``clear=True`` drops this agent's other mine values; ``mine_functions``
    updates only those given. Returns None when nothing is configured.

    CLI Example::

        cloud-master run car-0001 mine.update
    """
    try:
        entries = (parse_mine_functions(mine_functions) if mine_functions
                   else _configured(ctx))
    except ValueError as err:
        raise CommandExecutionError(f"mine.update: {err}") from err
    if not entries:
        return None
    data: dict[str, Any] = {}
    for entry in entries:
        try:
            data[entry.alias] = wrap_acl(entry, _call(ctx, entry))
        except Exception as err:  # as Salt: one broken function does not block the others
            log.error("mine.function_failed", function=entry.function, alias=entry.alias,
                      error=f"{type(err).__name__}: {err}")
    reply = _master_call(ctx, {"cmd": "_mine", "id": ctx.minion_id, "data": data,
                               "clear": bool(clear)})
    return reply is not False


def send(ctx: AgentContext, name: str, *args: Any, **kwargs: Any) -> bool:
    """Run one function now and send its result to the mine under ``name``. Keyword
    arguments ``mine_function`` (the function to run, when ``name`` is an alias),
    ``allow_tgt`` and ``allow_tgt_type`` (who may read it) are as in Salt.

    CLI Example::

        cloud-master run car-0001 mine.send grains.items
        cloud-master run car-0001 mine.send vin mine_function=obd.vin
    """
    definition: list[Any] = [*args, kwargs] if kwargs else list(args)
    try:
        entry = parse_mine_functions({name: definition})[0]
    except ValueError as err:
        raise CommandExecutionError(f"mine.send: {err}") from err
    try:
        value = _call(ctx, entry)
    except Exception as err:
        raise CommandExecutionError(f"mine.send: {entry.function} failed: "
                                    f"{type(err).__name__}: {err}") from err
    reply = _master_call(ctx, {"cmd": "_mine", "id": ctx.minion_id,
                               "data": {name: wrap_acl(entry, value)}, "clear": False})
    return reply is not False


def get(ctx: AgentContext, tgt: str, fun: str, tgt_type: str = "glob",
        exclude_minion: bool = False) -> dict[str, Any]:
    """The mine values of ``fun`` for the agents ``tgt`` selects (glob, list, grain, pcre or
    compound targeting): ``{id: value}``; for several functions (``a,b``),
    ``{function: {id: value}}``. ``exclude_minion=True`` leaves this agent out.

    CLI Example::

        cloud-master run car-0001 mine.get 'car-*' grains.items
        cloud-master run car-0001 mine.get 'G@os:Debian' vin compound
    """
    reply = _master_call(ctx, {"cmd": "_mine_get", "id": ctx.minion_id, "tgt": tgt,
                               "fun": fun, "tgt_type": tgt_type})
    if not isinstance(reply, dict):
        raise CommandExecutionError(f"mine.get: the master answered {reply!r}")
    if exclude_minion:
        reply.pop(ctx.minion_id, None)
    return reply


def delete(ctx: AgentContext, fun: str) -> bool:
    """Remove this agent's mine value ``fun`` from the master.

    CLI Example::

        cloud-master run car-0001 mine.delete vin
    """
    return _master_call(ctx, {"cmd": "_mine_delete", "id": ctx.minion_id,
                              "fun": fun}) is not False


def flush(ctx: AgentContext) -> bool:
    """Remove every mine value of this agent from the master.

    CLI Example::

        cloud-master run car-0001 mine.flush
    """
    return _master_call(ctx, {"cmd": "_mine_flush", "id": ctx.minion_id}) is not False


def valid(ctx: AgentContext) -> dict[str, Any]:
    """The configured mine functions as they will run: ``{alias: {function: [args]}}``.

    CLI Example::

        cloud-master run car-0001 mine.valid
    """
    return {entry.alias: {entry.function: [*entry.args, *([dict(entry.kwargs)]
                                                          if entry.kwargs else [])]}
            for entry in _configured(ctx)}
