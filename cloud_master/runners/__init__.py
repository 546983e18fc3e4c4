"""Master runners: a table of module names to import paths, plus entry points, imported lazily.

A runner module's public functions are the names in its ``__all__``; each takes the
:class:`RunnerContext` (the running master) as its first parameter, named ``ctx``, and may
be ``async``. ``cloud-master runner manage.status`` calls ``manage.status(ctx)``.

Errors: RunnerError
    ├── UnknownRunner (LookupError)        no such module or function
    ├── RunnerArgumentError (TypeError)    the arguments do not fit the signature
    └── JobNotFound (LookupError)          a jid the job cache does not hold
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

import structlog

if TYPE_CHECKING:
    from autopi_proto import messages
    from cloud_master.events import EventBus
    from cloud_master.ingest import TelemetryIngest
    from cloud_master.jobcache import JobCache
    from cloud_master.jobs import JobTracker
    from cloud_master.minions import MinionData
    from cloud_master.pki import KeyStore
    from cloud_master.runners.presence import Presence

__all__ = ["BUILTIN_RUNNERS", "ENTRY_POINT_GROUP", "JobNotFound", "RunnerArgumentError",
           "RunnerContext", "RunnerError", "RunnerFunction", "RunnerLoader", "UnknownRunner",
           "split_arguments"]

log = structlog.get_logger(__name__)

ENTRY_POINT_GROUP = "cloud_master.runners"

BUILTIN_RUNNERS: Mapping[str, str] = {
    "manage": "cloud_master.runners.manage",
    "jobs": "cloud_master.runners.jobs",
    "fleet": "cloud_master.runners.fleet",
}


class RunnerError(Exception):
    """A runner could not be called or could not do its work."""


class UnknownRunner(RunnerError, LookupError):
    """No runner function of that name (or its module failed to import)."""


class RunnerArgumentError(RunnerError, TypeError):
    """The arguments given do not fit the runner function's signature."""


class JobNotFound(RunnerError, LookupError):
    """The job cache holds no job with that jid."""


class RunnerContext(Protocol):
    """What runners use of the master (``cloud_master.server.Master`` is one)."""

    opts: Mapping[str, Any]
    events: EventBus
    keys: KeyStore
    jobcache: JobCache
    tracker: JobTracker
    minions: MinionData
    telemetry: TelemetryIngest
    presence: Presence

    def register_job(self, fun: str, arg: list[Any], tgt: str | list[str] = "*",
                     tgt_type: str = "glob", ret: str = "", user: str = "",
                     jid: str | None = None) -> tuple[messages.Publish, list[str]]: ...

    async def send_job(self, pub: messages.Publish, expected: list[str]) -> None: ...


@dataclass(frozen=True, slots=True)
class RunnerFunction:
    """One runner function; ``signature`` omits ``ctx``."""

    name: str
    callable: Callable[..., Any]
    signature: inspect.Signature
    doc: str


def split_arguments(arg: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    """Salt's wire ``arg`` (values, then ``{"__kwarg__": True, ...}`` dicts) as args and kwargs."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for item in arg:
        if isinstance(item, dict) and item.get("__kwarg__") is True:
            kwargs.update({k: v for k, v in item.items() if k != "__kwarg__"})
        else:
            args.append(item)
    return args, kwargs


class RunnerLoader:
    """Finds runner functions by ``module.function``; builtins win over entry points."""

    def __init__(self, modules: Mapping[str, str] | None = None, *,
                 entry_points: bool = True) -> None:
        self._table = dict(BUILTIN_RUNNERS if modules is None else modules)
        self._entry_points_read = not entry_points
        self._loaded: dict[str, dict[str, RunnerFunction]] = {}
        self._broken: dict[str, str] = {}
        self._lock = threading.Lock()

    def function(self, name: str) -> RunnerFunction:
        """The runner called ``name``; raises UnknownRunner naming what is wrong."""
        module, dot, func = name.partition(".")
        if not dot or not module or not func:
            raise UnknownRunner(f"'{name}' is not a runner name: write module.function, "
                                "e.g. manage.status")
        functions = self._functions_of(module)
        if functions is None:
            reason = self._broken.get(module, f"no runner module '{module}'")
            raise UnknownRunner(f"{reason} (known: {', '.join(self.known_modules())})")
        if name not in functions:
            raise UnknownRunner(f"no runner '{name}' (known: {', '.join(sorted(functions))})")
        return functions[name]

    def known_modules(self) -> list[str]:
        with self._lock:
            self._read_entry_points()
            return sorted(self._table)

    def list_functions(self) -> list[str]:
        """Every ``module.function`` name of the modules that load."""
        names: list[str] = []
        for module in self.known_modules():
            names.extend(self._functions_of(module) or {})
        return sorted(names)

    async def call(self, ctx: RunnerContext, name: str, arg: list[Any] | None = None) -> Any:
        """Run ``name`` with Salt wire arguments; async functions are awaited."""
        function = self.function(name)
        args, kwargs = split_arguments(list(arg or []))
        try:
            function.signature.bind(*args, **kwargs)
        except TypeError as err:
            raise RunnerArgumentError(f"{name}: {err}; usage: {name}{function.signature}") from None
        log.info("runner.called", fun=name)
        result = function.callable(ctx, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _functions_of(self, module: str) -> dict[str, RunnerFunction] | None:
        with self._lock:
            if module in self._loaded:
                return self._loaded[module]
            if module in self._broken:
                return None
            if module not in self._table:
                self._read_entry_points()
            path = self._table.get(module)
            return None if path is None else self._import(module, path)

    def _import(self, module: str, path: str) -> dict[str, RunnerFunction] | None:
        try:
            loaded = importlib.import_module(path)
            functions = {}
            for attr in getattr(loaded, "__all__", []):
                # A trailing underscore avoids a builtin's name: ``def list_`` is jobs.list.
                name = f"{module}.{attr[:-1] if attr.endswith('_') else attr}"
                functions[name] = _describe(name, getattr(loaded, attr))
        except Exception as err:  # a broken plugin must not take the master down
            reason = f"runner module {module} ({path}) failed to load: {type(err).__name__}: {err}"
            log.error("runner.module_unavailable", module=module, path=path, error=str(err))
            self._broken[module] = reason
            return None
        self._loaded[module] = functions
        return functions

    def _read_entry_points(self) -> None:
        if self._entry_points_read:
            return
        self._entry_points_read = True
        for point in entry_points(group=ENTRY_POINT_GROUP):
            if point.name in self._table:
                log.warning("runner.entry_point_shadowed", module=point.name, path=point.module)
                continue
            self._table[point.name] = point.module


def _describe(name: str, func: Callable[..., Any]) -> RunnerFunction:
    signature = inspect.signature(func)
    params = list(signature.parameters.values())
    if not params or params[0].name != "ctx":
        raise TypeError(f"runner {name} must take ctx as its first parameter")
    return RunnerFunction(name, func, signature.replace(parameters=params[1:]),
                          inspect.getdoc(func) or "")
