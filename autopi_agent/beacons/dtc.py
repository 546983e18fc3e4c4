"""Which trouble codes are new: pure comparison, and the last set kept on disk across reboots."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from autopi_common.fsutil import ensure_dir, write_atomic

__all__ = ["KINDS", "DtcMemory", "Seen", "compare"]

log = structlog.get_logger(__name__)

KINDS = ("stored", "pending", "permanent")
Seen = tuple[str, str, str]  # (kind, code, ecu)


def compare(last: frozenset[Seen], reading: Mapping[str, Any]
            ) -> tuple[list[dict[str, Any]], frozenset[Seen]]:
    """The codes in ``reading`` (an ``obd.dtc`` result) not in ``last``, and the set to keep.

    A code is new when no list held it for that ECU last time, so a pending code that
    becomes stored is not announced twice. A list the car did not answer keeps what was
    last seen in it: no answer is not "codes cleared".
    """
    unanswered = set(reading.get("unanswered") or ())
    answered = [kind for kind in KINDS if kind in reading and kind not in unanswered]
    known = {(code, ecu) for _, code, ecu in last}
    current = {seen for seen in last if seen[0] not in answered}
    new: dict[tuple[str, str], dict[str, Any]] = {}
    for kind in answered:
        for entry in reading.get(kind) or ():
            if not isinstance(entry, Mapping) or not entry.get("code"):
                continue
            code, ecu = str(entry["code"]), str(entry.get("ecu") or "")
            current.add((kind, code, ecu))
            if (code, ecu) in known:
                continue
            item = new.setdefault((code, ecu), {"code": code, "ecu": ecu, "status": [],
                                                "description": str(entry.get("description") or "")})
            item["status"].append(kind)
    return list(new.values()), frozenset(current)


class DtcMemory:
    """The codes last seen (and the VIN they were seen on), in one small JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> tuple[str | None, frozenset[Seen]]:
        """What was saved; nothing (None, empty) when the file is missing or unreadable."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            seen = frozenset((str(k), str(c), str(e)) for k, c, e in data["codes"])
            vin = data.get("vin")
            return (str(vin) if vin else None), seen
        except FileNotFoundError:
            return None, frozenset()
        except (OSError, ValueError, KeyError, TypeError) as err:
            # Announcing a code twice is better than refusing to start over a bad file.
            log.warning("beacon.dtc_memory_unreadable", path=str(self.path), error=repr(err))
            return None, frozenset()

    def save(self, vin: str | None, seen: frozenset[Seen]) -> None:
        """Replace the file atomically (a power cut leaves the old or the new set)."""
        ensure_dir(self.path.parent)
        body = {"vin": vin, "codes": sorted(list(entry) for entry in seen)}
        write_atomic(self.path, json.dumps(body).encode())
