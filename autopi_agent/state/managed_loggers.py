"""Telemetry loggers declared by states (``obd.logger``): kept durably in the agent's cache.

The store is one YAML file, ``cachedir/loggers/managed.yaml`` (``{name: definition}``),
replaced atomically on every change, so a power cut leaves the old set or the new one.
``ManagedLoggers.load()`` returns the same mapping object for as long as the file does not
change, which is how the running ``LoggerSet`` sees, cheaply, whether to look again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog
import yaml

from autopi_common.fsutil import ensure_dir, write_atomic

__all__ = ["MANAGED_FILE", "ManagedLoggers"]

log = structlog.get_logger(__name__)

MANAGED_FILE = Path("loggers") / "managed.yaml"
_Stamp = tuple[int, int, int]


class ManagedLoggers:
    """The loggers states manage for the agent whose cache is ``cachedir``."""

    def __init__(self, cachedir: str | Path) -> None:
        self.path = Path(cachedir) / MANAGED_FILE
        self._lock = threading.Lock()
        self._stamp: _Stamp | None = None
        self._data: dict[str, Any] = {}

    def load(self) -> Mapping[str, Any]:
        """The definitions by logger name; the same object while the file is unchanged."""
        with self._lock:
            stamp = self._stat()
            if stamp != self._stamp:
                self._data, self._stamp = self._read(), stamp
            return self._data

    def put(self, name: str, definition: Mapping[str, Any]) -> None:
        """Declare (or replace) the logger ``name``."""
        with self._lock:
            data = {**self._read(), name: dict(definition)}
            self._write(data)

    def remove(self, name: str) -> bool:
        """Forget the logger ``name``; False when it was not declared."""
        with self._lock:
            data = self._read()
            if name not in data:
                return False
            del data[name]
            self._write(data)
            return True

    def _stat(self) -> _Stamp | None:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        return info.st_ino, info.st_mtime_ns, info.st_size

    def _read(self) -> dict[str, Any]:
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            log.error("loggers.managed_unreadable", path=str(self.path), error=str(err))
            return {}
        return {str(key): value for key, value in data.items()} if isinstance(data, dict) else {}

    def _write(self, data: Mapping[str, Any]) -> None:
        ensure_dir(self.path.parent, 0o700)
        text = yaml.safe_dump(dict(data), default_flow_style=False, sort_keys=True)
        write_atomic(self.path, text.encode(), 0o600)
