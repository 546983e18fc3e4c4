"""The agent's side of the Salt mine: reading ``mine_functions`` and the periodic ``mine.update``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

__all__ = ["ACL_DATA", "ACL_ID", "MineFunction", "MineUpdater", "check_mine_functions",
           "parse_mine_functions", "wrap_acl"]

log = structlog.get_logger(__name__)

ACL_ID = "__saltmine_acl__"
ACL_DATA = "__data__"
_ACL_VERSION = 1


@dataclass(frozen=True, slots=True)
class MineFunction:
    """One mine entry: stored under ``alias``, computed by ``function(*args, **kwargs)``."""

    alias: str
    function: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    allow_tgt: Any = None
    allow_tgt_type: str | None = None


def _definition(alias: str, definition: Any) -> MineFunction:
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    if isinstance(definition, Mapping):
        kwargs = {str(key): value for key, value in definition.items()}
    elif isinstance(definition, (list, tuple)):
        for item in definition:
            if isinstance(item, Mapping):
                kwargs.update({str(key): value for key, value in item.items()})
            else:
                args.append(item)
    elif definition is not None:
        raise ValueError(f"mine_functions.{alias}: expected a list of arguments or a mapping, "
                         f"got {definition!r}")
    function = kwargs.pop("mine_function", None) or alias
    allow_tgt = kwargs.pop("allow_tgt", None) or None
    allow_tgt_type = kwargs.pop("allow_tgt_type", None) or None
    return MineFunction(alias, str(function), tuple(args), kwargs, allow_tgt,
                        None if allow_tgt_type is None else str(allow_tgt_type))


def parse_mine_functions(config: Any) -> list[MineFunction]:
    """The entries of Salt's ``mine_functions`` (a mapping, or a list of function names).

    ``{network.ip_addrs: [eth0], vin: {mine_function: obd.vin}}``: a list holds positional
    arguments and one-key mappings of keyword arguments; a mapping holds keyword
    arguments; ``mine_function`` renames, ``allow_tgt``/``allow_tgt_type`` restrict who
    may read the value. Raises ValueError for a malformed entry.
    """
    if not config:
        return []
    if isinstance(config, (list, tuple)):
        return [_definition(str(name), None) for name in config]
    if not isinstance(config, Mapping):
        raise ValueError(f"mine_functions: expected a mapping, got {config!r}")
    return [_definition(str(alias), definition) for alias, definition in config.items()]


def check_mine_functions(config: Any) -> str | None:
    """Config check for ``mine_functions``: None when valid, else what was expected."""
    try:
        parse_mine_functions(config)
    except ValueError as err:
        return str(err)
    return None


def wrap_acl(entry: MineFunction, value: Any) -> Any:
    """``value`` as stored on the master: wrapped with Salt's ACL marker when restricted."""
    if not entry.allow_tgt:
        return value
    wrapped: dict[str, Any] = {ACL_DATA: value, ACL_ID: _ACL_VERSION, "allow_tgt": entry.allow_tgt}
    if entry.allow_tgt_type:
        wrapped["allow_tgt_type"] = entry.allow_tgt_type
    return wrapped


RunJob = Callable[[str, Sequence[Any]], Awaitable[Any]]


class MineUpdater:
    """Runs ``mine.update`` at start and every ``interval_minutes`` (Salt's ``mine_interval``).

    ``run`` is the agent's dispatcher (``dispatcher.run``), so the update is an ordinary
    job with the job time limit; 0 minutes turns the periodic update off.
    """

    def __init__(self, run: RunJob, interval_minutes: float) -> None:
        self._run = run
        self.interval = float(interval_minutes) * 60.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the periodic task on the running loop (no-op when the interval is 0)."""
        if self.interval > 0 and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="mine-updater")

    async def stop(self) -> None:
        """Cancel the periodic task and wait for it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def update_now(self) -> Any:
        """One ``mine.update`` job; its result, or None when it failed (logged)."""
        try:
            return await self._run("mine.update", [])
        except Exception as err:  # one failed update must not stop the next ones
            log.warning("mine.update_failed", error=f"{type(err).__name__}: {err}")
            return None

    async def _loop(self) -> None:
        while True:
            await self.update_now()
            await asyncio.sleep(self.interval)
