"""The fleet at a glance: per vehicle, online or not, last seen, ignition, battery, position."""

from __future__ import annotations

import asyncio
import fnmatch
import time
from typing import Any

from cloud_master.pki import KeyState
from cloud_master.runners import RunnerContext
from cloud_master.telemetry.model import Sample

__all__ = ["summary"]

IGNITION, BATTERY, LAT, LON = "power.ignition", "power.battery_voltage", "gps.lat", "gps.lon"
DEFAULT_ONLINE_WINDOW = 300.0


def _value(sample: Sample | None) -> Any:
    if sample is None:
        return None
    return sample.value if sample.value is not None else sample.text


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _vehicle(ctx: RunnerContext, minion_id: str, samples: dict[str, Sample],
             window: float, now: float) -> dict[str, Any]:
    sighting = ctx.presence.last_seen(minion_id)
    times = [s.ts for s in samples.values()] + ([sighting.ts] if sighting else [])
    last = max(times) if times else None
    ignition = _value(samples.get(IGNITION))
    position = None
    if LAT in samples and LON in samples:
        position = {"lat": _value(samples[LAT]), "lon": _value(samples[LON]),
                    "ts": _iso(max(samples[LAT].ts, samples[LON].ts))}
    return {"online": last is not None and now - last <= window,
            "last_seen": _iso(last),
            "last_event": sighting.tag if sighting else None,
            "ignition": None if ignition is None else bool(ignition),
            "battery_voltage": _value(samples.get(BATTERY)),
            "position": position,
            "telemetry": {name: _value(sample) for name, sample in sorted(samples.items())}}


async def summary(ctx: RunnerContext, tgt: str = "*",
                  online_window: float | None = None) -> dict[str, dict[str, Any]]:
    """Per accepted vehicle matching the glob ``tgt``: ``online`` (heard from within
    ``online_window`` seconds, default the master's ``fleet_online_window`` or 300), ``last_seen``
    (UTC), ``ignition`` and ``battery_voltage`` (from ``power.ignition`` and
    ``power.battery_voltage``), ``position`` (``gps.lat``/``gps.lon``) and the latest value of
    every telemetry series.

    CLI: ``cloud-master runner fleet.summary 'car-*' online_window=600``
    """
    window = float(online_window if online_window is not None
                   else ctx.opts.get("fleet_online_window", DEFAULT_ONLINE_WINDOW))
    ids = sorted(m for m in ctx.keys.list().get(KeyState.ACCEPTED, [])
                 if fnmatch.fnmatchcase(m, tgt))
    if not ids:
        return {}
    latest = await asyncio.to_thread(ctx.telemetry.store.latest, ids)
    by_vehicle: dict[str, dict[str, Sample]] = {m: {} for m in ids}
    for sample in latest:
        by_vehicle.setdefault(sample.minion_id, {})[sample.series] = sample
    now = time.time()
    return {m: _vehicle(ctx, m, by_vehicle[m], window, now) for m in ids}
