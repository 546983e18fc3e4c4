"""Execution modules: a plain table of names to import paths, plus entry points, imported lazily.

A module's public functions are the names in its ``__all__``. A function whose first
parameter is named ``ctx`` receives the AgentContext; that parameter is hidden from
argument binding and from ``sys.doc``. A trailing underscore is dropped from the
published name (``def true_`` is ``test.true``). A module that fails to import is reported as
unavailable and does not affect the others.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import structlog

from autopi_agent.minion.errors import UnknownFunctionError

__all__ = ["BUILTIN_MODULES", "ENTRY_POINT_GROUP", "Function", "Loader"]

log = structlog.get_logger(__name__)

ENTRY_POINT_GROUP = "autopi_agent.modules"

BUILTIN_MODULES: Mapping[str, str] = {
    "test": "autopi_agent.modules.test",
    "sys": "autopi_agent.modules.sys",
    "grains": "autopi_agent.modules.grains",
    "cmd": "autopi_agent.modules.cmd",
    "saltutil": "autopi_agent.modules.saltutil",
    "event": "autopi_agent.modules.event",
    "state": "autopi_agent.modules.state",
    "pillar": "autopi_agent.modules.pillar",
    "config": "autopi_agent.modules.config",
    "schedule": "autopi_agent.modules.schedule",
    "obd": "autopi_agent.modules.obd",
    "gpio": "autopi_agent.modules.gpio",
    "mine": "autopi_agent.modules.mine",
    "power": "autopi_agent.modules.power",
    "loggers": "autopi_agent.modules.loggers",
    "beacons": "autopi_agent.modules.beacons",
}


@dataclass(frozen=True, slots=True)
class Function:
    """One execution function: ``name`` is ``module.function``; ``signature`` omits ctx."""

    name: str
    callable: Callable[..., Any]
    signature: inspect.Signature
    doc: str
    wants_ctx: bool

    @property
    def is_async(self) -> bool:
        """True for ``async def`` functions (awaited instead of run in a thread)."""
        return inspect.iscoroutinefunction(self.callable)

    @property
    def usage(self) -> str:
        """The call as a user writes it, without type annotations: ``test.echo(text)``."""
        plain = [param.replace(annotation=inspect.Parameter.empty)
                 for param in self.signature.parameters.values()]
        shown = self.signature.replace(parameters=plain,
                                       return_annotation=inspect.Signature.empty)
        return f"{self.name}{shown}"


def describe(name: str, func: Callable[..., Any]) -> Function:
    """The Function record for ``func`` published as ``name``."""
    signature = inspect.signature(func)
    params = list(signature.parameters.values())
    wants_ctx = bool(params) and params[0].name == "ctx"
    if wants_ctx:
        signature = signature.replace(parameters=params[1:])
    return Function(name=name, callable=func, signature=signature,
                    doc=inspect.getdoc(func) or "", wants_ctx=wants_ctx)


class Loader:
    """Finds execution functions by ``module.function`` name; one instance per agent.

    ``modules`` maps module names to import paths (default: BUILTIN_MODULES); modules from
    the ``autopi_agent.modules`` entry-point group are added unless ``entry_points`` is
    False. A builtin name wins over an entry point of the same name.
    """

    def __init__(self, modules: Mapping[str, str] | None = None, *,
                 entry_points: bool = True) -> None:
        self._table = dict(BUILTIN_MODULES if modules is None else modules)
        self._use_entry_points = entry_points
        self._entry_points_read = False
        self._loaded: dict[str, dict[str, Function]] = {}
        self._broken: dict[str, str] = {}
        self._lock = threading.Lock()

    def function(self, name: str) -> Function:
        """The function called ``name``; raises UnknownFunctionError if it is not available."""
        module, dot, func = name.partition(".")
        if not dot or not module or not func:
            raise UnknownFunctionError(name)
        functions = self._functions_of(module)
        if functions is None:
            raise UnknownFunctionError(name, self._broken.get(module))
        try:
            return functions[name]
        except KeyError:
            raise UnknownFunctionError(name) from None

    def outputter(self, name: str) -> str | None:
        """The outputter a module asks for its function (``__outputter__``), e.g. "highstate"."""
        try:
            function = self.function(name)
        except UnknownFunctionError:
            return None
        module = sys.modules.get(getattr(function.callable, "__module__", ""))
        wanted = getattr(module, "__outputter__", None)
        if not isinstance(wanted, dict):
            return None
        value = wanted.get(getattr(function.callable, "__name__", ""))
        return value if isinstance(value, str) else None

    def list_modules(self) -> list[str]:
        """Sorted names of the modules that load."""
        return sorted(module for module in self.known_modules()
                      if self._functions_of(module) is not None)

    def list_functions(self, pattern: str | None = None) -> list[str]:
        """Sorted ``module.function`` names, all or those ``pattern`` selects.

        As Salt's sys.list_functions: a pattern with ``*`` or ``.`` is a glob over full
        names (``sys.list_*``); a bare word is a module name (``sys``, not ``sysctl``).
        """
        names = [name for module in self.list_modules()
                 for name in self._functions_of(module) or {}]
        if pattern is None:
            return sorted(names)
        if "*" in pattern or "." in pattern:
            return sorted(fnmatch.filter(names, pattern))
        return sorted(name for name in names if name.startswith(pattern + "."))

    def known_modules(self) -> list[str]:
        """Every module name in the table and entry points, loadable or not."""
        self._read_entry_points()
        return sorted(self._table)

    def unavailable(self) -> dict[str, str]:
        """Modules that failed to load, with the reason (after they were first asked for)."""
        return dict(self._broken)

    def _functions_of(self, module: str) -> dict[str, Function] | None:
        with self._lock:
            if module in self._loaded:
                return self._loaded[module]
            if module in self._broken:
                return None
            path = self._table.get(module)
            if path is None and not self._entry_points_read:
                self._read_entry_points_locked()
                path = self._table.get(module)
            if path is None:
                return None
            return self._import(module, path)

    def _import(self, module: str, path: str) -> dict[str, Function] | None:
        try:
            loaded = importlib.import_module(path)
            functions = _public_functions(module, loaded)
        except Exception as err:  # a broken plugin must not take the agent down
            reason = f"module {module} ({path}) failed to load: {type(err).__name__}: {err}"
            log.error("loader.module_unavailable", module=module, path=path,
                      error=f"{type(err).__name__}: {err}")
            self._broken[module] = reason
            return None
        self._loaded[module] = functions
        log.debug("loader.module_loaded", module=module, functions=len(functions))
        return functions

    def _read_entry_points(self) -> None:
        with self._lock:
            self._read_entry_points_locked()

    def _read_entry_points_locked(self) -> None:
        if self._entry_points_read or not self._use_entry_points:
            self._entry_points_read = True
            return
        self._entry_points_read = True
        # Imported here: importlib.metadata pulls in email, zipfile, csv ... (~1.6 MiB) that an
        # agent using only the built-in modules never needs.
        from importlib.metadata import entry_points

        for point in entry_points(group=ENTRY_POINT_GROUP):
            if point.name in self._table:
                log.warning("loader.entry_point_shadowed", module=point.name,
                            path=point.module, kept=self._table[point.name])
                continue
            self._table[point.name] = point.module


def _public_functions(module: str, loaded: ModuleType) -> dict[str, Function]:
    names = getattr(loaded, "__all__", None)
    if names is None:
        raise ImportError(f"{loaded.__name__} has no __all__ listing its public functions")
    functions: dict[str, Function] = {}
    for attr in names:
        func = getattr(loaded, attr)
        if not inspect.isroutine(func):
            continue  # constants and classes may be exported for Python callers
        # A trailing underscore dodges Python keywords and builtins: def true_() is test.true.
        name = f"{module}.{attr.rstrip('_') or attr}"
        functions[name] = describe(name, func)
    return functions
