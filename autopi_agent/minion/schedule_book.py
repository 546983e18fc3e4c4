"""The agent's schedule in three layers: the config, changes saved at run time, the pillar.

- ``config``: the agent config's ``schedule:`` (read-only here).
- ``saved``: what ``schedule.add/modify/delete/enable_job/...`` changed, kept in
  ``cachedir/schedule.json`` (atomic write, mode 0600) so it survives restarts. It holds
  whole job definitions that replace or add to the config's, the names of config jobs
  deleted, and the schedule-wide ``enabled`` switch. A config edit to a job that was not
  changed at run time shows at the next start.
- ``pillar``: the pillar's ``schedule:``, replaced whenever the pillar is. A job of the same
  name in the config or saved layer wins, as in Salt. Pillar jobs are changed in the pillar
  (run-time changes to them are refused, where Salt keeps them until the next refresh).

Invalid saved or pillar jobs are skipped and listed in ``errors`` (and logged); the config
is checked strictly when it is loaded.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import structlog

from autopi_agent.minion.schedule_spec import (
    TIME_KEYS,
    InvalidJob,
    JobSpec,
    ScheduleError,
    ScheduleSettings,
    Splay,
    parse_job,
    split_schedule,
)
from autopi_common.fsutil import ensure_dir, write_atomic

__all__ = ["SAVED_FILE", "ScheduleBook", "Where"]

log = structlog.get_logger(__name__)

SAVED_FILE = "schedule.json"
_FORMAT = 1
Where = Literal["config", "saved", "pillar"]


class ScheduleBook:
    """The effective schedule and its run-time changes; not thread-safe (one event loop)."""

    def __init__(self, config: Mapping[str, Any] | None = None, path: Path | str | None = None,
                 *, pillar: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._config_settings, self._config = split_schedule(config, "schedule")
        for name, definition in self._config.items():
            parse_job(name, definition, self._config_settings.splay)  # strict: raises
        self._saved: dict[str, dict[str, Any]] = {}
        self._deleted: set[str] = set()
        self._saved_enabled: bool | None = None
        self._pillar_settings = ScheduleSettings()
        self._pillar: dict[str, Any] = {}
        self._pillar_errors: list[str] = []
        self._jobs: dict[str, JobSpec] = {}
        self._where: dict[str, Where] = {}
        self._errors: list[str] = []
        self._version = 0  # bumped by every run-time change
        self._written = 0
        self._write_lock = threading.Lock()
        self._load_saved()
        self.set_pillar(pillar)

    @classmethod
    def from_opts(cls, opts: Mapping[str, Any], pillar: Mapping[str, Any] | None = None
                  ) -> ScheduleBook:
        """The book of an agent: config ``schedule``, saved file under ``cachedir``."""
        path = Path(str(opts.get("cachedir", "cache"))) / SAVED_FILE
        return cls(opts.get("schedule"), path, pillar=pillar)

    # -- reading -----------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """The schedule-wide switch (``schedule.enable``/``disable``)."""
        for value in (self._saved_enabled, self._config_settings.enabled,
                      self._pillar_settings.enabled):
            if value is not None:
                return value
        return True

    @property
    def errors(self) -> list[str]:
        """Why saved or pillar jobs were skipped."""
        return list(self._errors)

    def jobs(self) -> dict[str, JobSpec]:
        """Every valid job by name."""
        return dict(self._jobs)

    def get(self, name: str) -> JobSpec | None:
        return self._jobs.get(name)

    def where(self, name: str) -> Where | None:
        """Which layer job ``name`` comes from, or None when there is no such job."""
        return self._where.get(name)

    def listing(self, *, show_all: bool = False, show_disabled: bool = True,
                where: str | None = None) -> dict[str, dict[str, Any]]:
        """Job definitions as written, with ``enabled`` filled in (Salt's schedule.list)."""
        out: dict[str, dict[str, Any]] = {}
        for name, spec in sorted(self._jobs.items()):
            layer = self._where[name]
            if where == "pillar" and layer != "pillar" or where == "opts" and layer == "pillar":
                continue
            if (name.startswith("__") and not show_all) or (not spec.enabled and not show_disabled):
                continue
            out[name] = {**copy.deepcopy(spec.definition), "enabled": spec.enabled}
        return out

    def is_saved(self, name: str) -> bool:
        """Whether job ``name`` is defined by a run-time change kept on disk."""
        return name in self._saved

    # -- changing ----------------------------------------------------------------------

    def set_pillar(self, pillar: Mapping[str, Any] | None) -> None:
        """Use the ``schedule`` of a (new) pillar."""
        raw = (pillar or {}).get("schedule")
        self._pillar_errors = []
        try:
            self._pillar_settings, self._pillar = split_schedule(raw, "pillar schedule")
        except InvalidJob as err:
            self._pillar_settings, self._pillar = ScheduleSettings(), {}
            self._pillar_errors.append(str(err))
        self._rebuild()

    def add(self, name: str, definition: Mapping[str, Any]) -> JobSpec:
        """Add a new job (raises ScheduleError when it exists, InvalidJob when it is wrong)."""
        if name in self._jobs:
            raise ScheduleError(f"Job {name} already exists in schedule.")
        spec = parse_job(name, dict(definition), self._splay())
        self._saved[name] = dict(spec.definition)
        self._deleted.discard(name)
        self._version += 1
        self._rebuild()
        return spec

    def modify(self, name: str, changes: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Change some keys of a job; new timing keys replace all the old ones. (old, new)."""
        current = self._local(name)
        old = dict(current.definition)
        new = dict(old)
        if any(key in changes for key in (*TIME_KEYS, "cron")):
            for key in (*TIME_KEYS, "cron"):
                new.pop(key, None)
        new.update(changes)
        spec = parse_job(name, new, self._splay())
        self._saved[name] = dict(spec.definition)
        self._version += 1
        self._rebuild()
        return old, dict(spec.definition)

    def delete(self, name: str) -> None:
        """Remove a job; a config job stays deleted until it is added again."""
        self._local(name)
        self._saved.pop(name, None)
        if name in self._config:
            self._deleted.add(name)
        self._version += 1
        self._rebuild()

    def set_job_enabled(self, name: str, enabled: bool) -> None:
        """Enable or disable one job."""
        current = self._local(name)
        self._saved[name] = {**current.definition, "enabled": enabled}
        self._version += 1
        self._rebuild()

    def set_enabled(self, enabled: bool) -> None:
        """Enable or disable the whole schedule."""
        self._saved_enabled = enabled
        self._version += 1

    def snapshot(self) -> tuple[int, bytes]:
        """The run-time changes as file content, with their version (take it on the loop)."""
        data = {"format": _FORMAT, "enabled": self._saved_enabled, "jobs": self._saved,
                "deleted": sorted(self._deleted)}
        return self._version, json.dumps(data, indent=1, sort_keys=True).encode()

    def write(self, version: int, content: bytes) -> None:
        """Write a snapshot atomically (any thread); an older one than on disk is skipped."""
        if self.path is None:
            return
        with self._write_lock:
            if version <= self._written:
                return
            ensure_dir(self.path.parent, 0o700)
            write_atomic(self.path, content, 0o600)
            self._written = version

    def save(self) -> None:
        """Write the run-time changes to disk now; no-op without a path."""
        self.write(*self.snapshot())

    # -- internals ---------------------------------------------------------------------

    def _local(self, name: str) -> JobSpec:
        spec = self._jobs.get(name)
        if spec is None:
            raise ScheduleError(f"Job {name} does not exist.")
        if self._where[name] == "pillar":
            raise ScheduleError(f"Job {name} comes from the pillar: change it in the pillar, "
                                "then run saltutil.refresh_pillar.")
        return spec

    def _splay(self) -> Splay | None:
        return self._config_settings.splay or self._pillar_settings.splay

    def _load_saved(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("format") != _FORMAT:
                raise ValueError("not a schedule file of this agent")
            jobs, deleted, enabled = data["jobs"], data["deleted"], data["enabled"]
            if not isinstance(jobs, dict) or not isinstance(deleted, list) \
                    or enabled not in (None, True, False):
                raise ValueError("unexpected layout")
        except (OSError, ValueError, KeyError) as err:
            log.error("schedule.saved_unreadable", path=str(self.path), error=str(err))
            return
        self._saved = {str(name): dict(job) for name, job in jobs.items() if isinstance(job, dict)}
        self._deleted = {str(name) for name in deleted}
        self._saved_enabled = enabled

    def _rebuild(self) -> None:
        jobs: dict[str, JobSpec] = {}
        where: dict[str, Where] = {}
        errors = list(self._pillar_errors)
        splay = self._splay()
        layers: list[tuple[Where, Mapping[str, Any]]] = [
            ("pillar", self._pillar),
            ("config", {name: job for name, job in self._config.items()
                        if name not in self._deleted}),
            ("saved", self._saved),
        ]
        for layer, definitions in layers:
            for name, definition in definitions.items():
                try:
                    jobs[name] = parse_job(name, definition, splay)
                except InvalidJob as err:
                    errors.append(f"{layer}: {err}")
                    continue
                where[name] = layer
        for error in errors:
            if error not in self._errors:
                log.error("schedule.invalid_job", error=error)
        self._jobs, self._where, self._errors = jobs, where, errors
