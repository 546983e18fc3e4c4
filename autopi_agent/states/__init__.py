"""State modules: a plain table of names to import paths, plus entry points, imported lazily.

A state module is a plain Python module whose ``__all__`` lists its state functions (and
``mod_watch`` when it reacts to ``watch``). A state function takes a ``StateContext`` as
its first parameter ``ctx``, then the state's arguments by name (``name`` first), and
returns ``{"name", "result", "changes", "comment"}``; with ``ctx.test`` it changes
nothing and answers ``result: None`` when it would have. Product modules (``obd``,
``power``, ``agent``) are added to the table, or come from the ``autopi_agent.states``
entry-point group.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points

from autopi_agent.minion.loader import Loader

__all__ = ["ENTRY_POINT_GROUP", "STATE_MODULES", "state_loader"]

ENTRY_POINT_GROUP = "autopi_agent.states"

STATE_MODULES: Mapping[str, str] = {
    "file": "autopi_agent.states.file",
    "cmd": "autopi_agent.states.cmd",
    "service": "autopi_agent.states.service",
    "pkg": "autopi_agent.states.pkg",
    "test": "autopi_agent.states.test",
    "obd": "autopi_agent.states.obd",
    "agent": "autopi_agent.states.agent",
    "power": "autopi_agent.states.power",
}


def state_loader(modules: Mapping[str, str] | None = None, *, plugins: bool = True) -> Loader:
    """A loader over the state-module table (``file.managed`` ...), entry points added
    unless ``plugins`` is False; a builtin name wins over a plugin of the same name."""
    table = dict(STATE_MODULES if modules is None else modules)
    if plugins:
        for point in entry_points(group=ENTRY_POINT_GROUP):
            table.setdefault(point.name, point.module)
    return Loader(table, entry_points=False)
