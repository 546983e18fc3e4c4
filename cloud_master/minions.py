"""What the master knows about each minion besides its key: grains and when it was last seen."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from autopi_common.fsutil import ensure_dir, write_atomic
from cloud_master.pki import valid_id

log = structlog.get_logger(__name__)


class MinionData:
    """Grains cached from minions' ``_pillar`` requests, kept in memory and on disk."""

    def __init__(self, cachedir: Path | str) -> None:
        self._dir = Path(cachedir) / "minions"
        self._grains: dict[str, dict[str, Any]] = {}
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if not self._dir.is_dir():
            return
        for path in self._dir.glob("*.json"):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as err:
                log.warning("minion_data.unreadable", path=str(path), error=str(err))
                continue
            if isinstance(data, dict) and isinstance(data.get("grains"), dict):
                self._grains[path.stem] = data["grains"]

    def grains(self, minion_id: str) -> Mapping[str, Any]:
        self._load()
        return self._grains.get(minion_id, {})

    def all_grains(self) -> Mapping[str, Mapping[str, Any]]:
        self._load()
        return self._grains

    def set_grains(self, minion_id: str, grains: dict[str, Any]) -> None:
        self._load()
        if not valid_id(minion_id) or self._grains.get(minion_id) == grains:
            return
        self._grains[minion_id] = grains
        ensure_dir(self._dir, 0o700)
        body = json.dumps({"grains": grains, "updated": time.time()}, default=str)
        write_atomic(self._dir / f"{minion_id}.json", body.encode(), 0o600)

    def forget(self, minion_id: str) -> None:
        self._load()
        self._grains.pop(minion_id, None)
        (self._dir / f"{minion_id}.json").unlink(missing_ok=True)
