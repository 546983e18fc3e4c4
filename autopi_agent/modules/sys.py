"""Execution module ``sys``: which modules and functions this agent has, and their docs."""

from __future__ import annotations

import fnmatch

from autopi_agent.minion.context import AgentContext

__all__ = ["doc", "list_functions", "list_modules"]


def list_functions(ctx: AgentContext, *patterns: str) -> list[str]:
    """List ``module.function`` names, all or those selected by ``patterns``.

    A bare word is a module name (``sys`` lists sys.*, not sysctl.*); a pattern with ``*``
    or ``.`` is a glob over full names (``'sys.list_*'``).

    CLI Example::

        cloud-master run car-0001 sys.list_functions
        cloud-master run car-0001 sys.list_functions sys test
        cloud-master run car-0001 sys.list_functions 'sys.list_*'
    """
    if not patterns:
        return ctx.loader.list_functions()
    names: set[str] = set()
    for pattern in patterns:
        names.update(ctx.loader.list_functions(str(pattern)))
    return sorted(names)


def list_modules(ctx: AgentContext, *patterns: str) -> list[str]:
    """List the modules that load on this agent, all or those matching glob ``patterns``.

    CLI Example::

        cloud-master run car-0001 sys.list_modules
        cloud-master run car-0001 sys.list_modules 's*'
    """
    modules = ctx.loader.list_modules()
    if not patterns:
        return modules
    return sorted({module for pattern in patterns
                   for module in fnmatch.filter(modules, str(pattern))})


def doc(ctx: AgentContext, *names: str) -> dict[str, str]:
    """Return ``{function: docstring}`` for all functions or those ``names`` select.

    A name is a module (``sys``), a function (``sys.doc``) or a glob (``'sys.list_*'``).

    CLI Example::

        cloud-master run car-0001 sys.doc test.echo
        cloud-master run car-0001 sys.doc 'sys.*'
    """
    if names:
        selected: set[str] = set()
        for name in names:
            selected.update(_select(ctx, str(name)))
    else:
        selected = set(ctx.loader.list_functions())
    return {name: ctx.loader.function(name).doc for name in sorted(selected)}


def _select(ctx: AgentContext, name: str) -> list[str]:
    if "*" in name:
        return ctx.loader.list_functions(name)
    everything = ctx.loader.list_functions()
    prefix = name if name.endswith(".") else name + "."
    return [fun for fun in everything if fun == name or fun.startswith(prefix)]
