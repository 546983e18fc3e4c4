"""Execution module ``config``: one setting looked up in the agent config, grains and pillar.

As Salt's ``config`` module: ``config.get`` searches the agent's own config first, then its
grains, then its pillar, then the master's config as published in the pillar under
``master``, and returns the first match. States and templates use it for settings that may
come from any of those (``{{ salt['config.get']('obd:baudrate', 38400) }}``). Salt's
built-in defaults table (MongoDB, Redis, Solr settings) has no counterpart here.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping
from typing import Any

from autopi_agent.dropins import merge_settings
from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.errors import CommandExecutionError
from autopi_agent.state.sources import pillar_for
from autopi_proto.grainmatch import DEFAULT_DELIMITER, traverse

__all__ = ["get", "items", "option"]

_MISSING = object()
MERGE_STRATEGIES = ("recurse", "overwrite")


def _sources(ctx: AgentContext, omit_opts: bool, omit_grains: bool, omit_pillar: bool,
             omit_master: bool) -> Iterator[Mapping[str, Any]]:
    """The places searched, first match wins: config, grains, pillar, master config."""
    if not omit_opts:
        yield ctx.opts
    if not omit_grains:
        yield ctx.grains
    if not (omit_pillar and omit_master):
        pillar = pillar_for(ctx)
        if not omit_pillar:
            yield pillar
        master = pillar.get("master")
        if not omit_master and isinstance(master, Mapping):
            yield master


def get(ctx: AgentContext, key: str, default: Any = "", delimiter: str = DEFAULT_DELIMITER,
        merge: str | None = None, omit_opts: bool = False, omit_pillar: bool = False,
        omit_master: bool = False, omit_grains: bool = False) -> Any:
    """The value of ``key`` (nested keys joined with ``:``, as ``obd:baudrate``) from the agent
    config, else the grains, else the pillar, else the master config in ``pillar['master']``;
    ``default`` when none has it.

    ``merge=recurse`` merges the four (config over grains over pillar over master config,
    mappings merged key by key) before looking the key up; ``merge=overwrite`` lets a
    later source's top-level key replace the earlier one whole. ``omit_*`` skips a source.

    CLI Example::

        cloud-master run car-0001 config.get obd:baudrate
        cloud-master run car-0001 config.get fleet default=unassigned
        cloud-master run car-0001 config.get loggers merge=recurse
    """
    sources = list(_sources(ctx, omit_opts, omit_grains, omit_pillar, omit_master))
    if merge is None:
        for source in sources:
            value = traverse(source, key, _MISSING, delimiter)
            if value is not _MISSING:
                return value
        return default
    if merge not in MERGE_STRATEGIES:
        raise CommandExecutionError(f"merge={merge!r} is not a merge strategy; use one of "
                                    f"{', '.join(MERGE_STRATEGIES)}")
    merged: dict[str, Any] = {}
    for source in reversed(sources):  # the master config first, the agent config last
        if merge == "recurse":
            merged = merge_settings(merged, source)
        else:
            merged.update(source)
    value = traverse(merged, key, _MISSING, delimiter)
    return default if value is _MISSING else value


def option(ctx: AgentContext, value: str, default: Any = None, omit_opts: bool = False,
           omit_grains: bool = False, omit_pillar: bool = False, omit_master: bool = False,
           omit_all: bool = False, wildcard: bool = False) -> Any:
    """The top-level setting ``value`` (not nested), searched as ``config.get`` does.

    With ``wildcard=True``, ``value`` is a glob and the answer maps every matching key to
    its value, the agent config winning over grains, pillar and master config.

    CLI Example::

        cloud-master run car-0001 config.option master_port
        cloud-master run car-0001 config.option 'obd*' wildcard=True
    """
    if omit_all:
        omit_opts = omit_grains = omit_pillar = omit_master = True
    sources = list(_sources(ctx, omit_opts, omit_grains, omit_pillar, omit_master))
    if not wildcard:
        for source in sources:
            if value in source:
                return source[value]
        return "" if default is None else default
    found: dict[str, Any] = {}
    for source in reversed(sources):
        found.update({name: source[name] for name in fnmatch.filter(source, value)})
    return found or ({} if default is None else default)


def items(ctx: AgentContext) -> dict[str, Any]:
    """The agent's whole configuration, as loaded (main file, drop-ins, defaults).

    CLI Example::

        cloud-master run car-0001 config.items
    """
    return dict(ctx.opts)
