"""The agent changing its own config safely: the states' drop-in, its last good version, a trial.

A state (``agent.config``, ``power.settings``) never edits the main config file. It writes
``agent.d/50-states.yaml`` (see ``dropins``) after checking that the whole config, main
file and every drop-in, still validates with the new settings. Before replacing the drop-in
it keeps the last *confirmed* version as ``50-states.yaml.prev`` and leaves a trial marker
``50-states.trial``. The agent then restarts (re-executes itself once the state's return has
been delivered). On that start, ``guard_trial`` gives the new config ``config_trial_window``
seconds to authenticate with the master: success confirms it (the marker goes), failure, or
more than ``MAX_TRIAL_STARTS`` starts without success (a crash loop), puts the previous
drop-in back and restarts again. So a change that points the agent at an unreachable master
or breaks its start-up undoes itself, and the agent comes back on the settings that worked.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import structlog
import yaml

from autopi_agent.dropins import dropin_dir, load_layers, merge_settings, read_settings
from autopi_common.config import ConfigError, Schema
from autopi_common.fsutil import ensure_dir, write_atomic

__all__ = ["MAX_TRIAL_STARTS", "STATE_DROPIN", "SelfConfig", "SelfConfigError", "Trial",
           "guard_trial", "reexec"]

log = structlog.get_logger(__name__)

STATE_DROPIN = "50-states.yaml"
MAX_TRIAL_STARTS = 3
_HEADER = ("# Written by the agent.config / power.settings states; the last confirmed version is "
           "50-states.yaml.prev.\n# Edit agent.yaml or a later drop-in (90-local.yaml) instead.\n")


class SelfConfigError(Exception):
    """The agent's own config cannot be changed (no config file, an unreadable drop-in)."""


@dataclass(frozen=True, slots=True)
class Trial:
    """A config change on probation: when it was written and how often the agent started on it."""

    changed_at: float
    starts: int


class SelfConfig:
    """The drop-in states manage for the agent whose main config file is ``conf_file``."""

    def __init__(self, conf_file: Path | str, schema: Schema) -> None:
        self.conf_file = Path(conf_file)
        self.schema = schema
        folder = dropin_dir(self.conf_file)
        self.dropin = folder / STATE_DROPIN
        self.previous = folder / f"{STATE_DROPIN}.prev"
        self.marker = folder / "50-states.trial"

    @classmethod
    def from_opts(cls, opts: Mapping[str, Any]) -> SelfConfig | None:
        """The agent's own, or None when it was started without a config file."""
        conf_file = opts.get("conf_file")
        if not conf_file:
            return None
        from autopi_agent.config import AGENT_SCHEMA

        return cls(conf_file, AGENT_SCHEMA)

    def current(self) -> dict[str, Any]:
        """What the drop-in holds now (empty when there is none)."""
        return read_settings(self.dropin)

    def effective(self, dropin: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The options the agent loads, with ``dropin`` standing in for the drop-in if given.

        Raises ConfigError (naming the file and key) when they do not validate.
        """
        replace = {self.dropin: dropin} if dropin is not None else None
        return load_layers(self.conf_file, self.schema, replace=replace)

    @staticmethod
    def planned(current: Mapping[str, Any], settings: Mapping[str, Any],
                remove: Sequence[str] = ()) -> dict[str, Any]:
        """The drop-in after merging ``settings`` into it and dropping the keys ``remove``."""
        new = merge_settings(current, settings)
        for key in remove:
            new.pop(key, None)
        return new

    def write(self, new: Mapping[str, Any]) -> None:
        """Keep the last confirmed drop-in, write ``new`` atomically, start a trial."""
        ensure_dir(self.dropin.parent, 0o755)
        if self.trial() is None:  # on a change still on trial, .prev already holds the good one
            write_atomic(self.previous, _dump(self.current()), 0o600)
        write_atomic(self.dropin, _dump(new), 0o600)
        self._save_trial(Trial(time.time(), 0))
        log.info("selfconfig.written", dropin=str(self.dropin), keys=sorted(new))

    def trial(self) -> Trial | None:
        """The trial in progress, or None."""
        try:
            data = json.loads(self.marker.read_text(encoding="utf-8"))
            return Trial(float(data["changed_at"]), int(data["starts"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return Trial(0.0, MAX_TRIAL_STARTS)  # a damaged marker: treat the change as failed

    def count_start(self) -> Trial | None:
        """Record that the agent started on a config on trial; the updated trial or None."""
        trial = self.trial()
        if trial is None:
            return None
        trial = Trial(trial.changed_at, trial.starts + 1)
        self._save_trial(trial)
        return trial

    def confirm(self) -> None:
        """The new config reached the master: it becomes the one to come back to."""
        self.marker.unlink(missing_ok=True)
        log.info("selfconfig.confirmed", dropin=str(self.dropin))

    def rollback(self, reason: str) -> None:
        """Put the last confirmed drop-in back and end the trial."""
        previous = read_settings(self.previous)
        write_atomic(self.dropin, _dump(previous), 0o600)
        self.marker.unlink(missing_ok=True)
        log.error("selfconfig.rolled_back", dropin=str(self.dropin), reason=reason)

    def _save_trial(self, trial: Trial) -> None:
        data = {"changed_at": trial.changed_at, "starts": trial.starts}
        write_atomic(self.marker, json.dumps(data).encode(), 0o600)


def _dump(settings: Mapping[str, Any]) -> bytes:
    body = yaml.safe_dump(dict(settings), default_flow_style=False, sort_keys=True) \
        if settings else ""
    return (_HEADER + body).encode()


async def guard_trial(selfconfig: SelfConfig, authenticated: asyncio.Event, window: float,
                      restart: Callable[[str], None]) -> None:
    """Confirm a config on trial once ``authenticated`` is set, or roll it back and
    ``restart`` when that takes longer than ``window`` seconds (or the agent keeps
    restarting on it)."""
    trial = await asyncio.to_thread(selfconfig.count_start)
    if trial is None:
        return
    log.warning("selfconfig.on_trial", starts=trial.starts, window=window)
    if trial.starts > MAX_TRIAL_STARTS:
        reason = f"the agent started {trial.starts - 1} times on it without reaching the master"
    else:
        try:
            await asyncio.wait_for(authenticated.wait(), window)
        except TimeoutError:
            reason = f"no authentication with the master within {window:g} s"
        else:
            await asyncio.to_thread(selfconfig.confirm)
            return
    try:
        await asyncio.to_thread(selfconfig.rollback, reason)
    except (OSError, ConfigError) as err:
        log.error("selfconfig.rollback_failed", error=str(err))
        return
    restart(f"config rolled back: {reason}")


def reexec() -> NoReturn:
    """Replace this process with a fresh agent started the same way (same PID, same args)."""
    argv = [sys.executable, "-m", "autopi_agent.cli", *sys.argv[1:]]
    log.warning("agent.reexec", argv=argv[3:])
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
