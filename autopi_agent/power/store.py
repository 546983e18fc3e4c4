"""What the power manager keeps across reboots: recent transitions and wake-trigger overrides.

Two small JSON files in ``<cachedir>/power/``, each replaced atomically (a power cut while
writing leaves the previous version): ``history.json`` (newest last, bounded) and
``wake.json`` (the triggers set with power.wake_triggers).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from autopi_common.fsutil import ensure_dir, write_atomic

__all__ = ["PowerStore", "boot_id"]

log = structlog.get_logger(__name__)

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """This boot's id (Linux), so a restarted agent knows it did not just wake up."""
    try:
        return _BOOT_ID.read_text(encoding="ascii").strip()
    except OSError:
        return ""


class PowerStore:
    """History and overrides under ``directory``; thread-safe, every write durable."""

    def __init__(self, directory: Path | str, size: int = 200) -> None:
        self.directory = Path(directory)
        self.size = size
        self._lock = threading.Lock()

    @property
    def history_path(self) -> Path:
        return self.directory / "history.json"

    @property
    def wake_path(self) -> Path:
        return self.directory / "wake.json"

    def _read(self, path: Path, default: Any) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return default
        except (OSError, ValueError) as err:
            log.warning("power.store_unreadable", path=str(path), error=str(err))
            return default

    def _write(self, path: Path, value: Any) -> None:
        ensure_dir(self.directory)
        write_atomic(path, json.dumps(value, sort_keys=True).encode("utf-8"), 0o600)

    def record(self, event: str, **details: Any) -> dict[str, Any]:
        """Append one transition (``event`` like ``engine/stop``) stamped with wall time."""
        entry = {"time": round(time.time(), 3), "event": event, **details}
        with self._lock:
            entries = self._read(self.history_path, [])
            entries = [*entries, entry][-self.size:] if isinstance(entries, list) else [entry]
            self._write(self.history_path, entries)
        return entry

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Recent transitions, newest last (at most ``limit``)."""
        with self._lock:
            entries = self._read(self.history_path, [])
        if not isinstance(entries, list):
            return []
        return entries[-limit:] if limit else entries

    def last(self, event: str) -> dict[str, Any] | None:
        """The newest entry of kind ``event``."""
        for entry in reversed(self.history()):
            if entry.get("event") == event:
                return dict(entry)
        return None

    def wake_overrides(self) -> dict[str, Any]:
        """What power.wake_triggers set: {triggers, timer, voltage_rise} (any may be absent)."""
        with self._lock:
            value = self._read(self.wake_path, {})
        return value if isinstance(value, dict) else {}

    def set_wake_overrides(self, overrides: dict[str, Any]) -> None:
        with self._lock:
            self._write(self.wake_path, overrides)
