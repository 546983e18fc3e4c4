"""Execution module ``power``: battery, ignition and sleep state; sleep, hibernate, reboot, shutdown.

In the agent daemon every call goes through its power manager (``ctx.services["power"]``,
running when ``power: {enabled: true}``). ``autopi-agent call`` on the dongle, without
the daemon, talks to the power MCU itself. Powering down from a job sent by the master
(anything the daemon runs) needs ``confirm=True``; a local ``autopi-agent call`` does not.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.errors import CommandExecutionError
from autopi_agent.power.errors import PowerError
from autopi_agent.power.settings import PowerSettings
from autopi_agent.power.store import PowerStore

__all__ = ["hibernate", "history", "reboot", "shutdown", "sleep", "status", "wake_triggers"]


def _manager(ctx: AgentContext) -> Any:
    return ctx.services.get("power")


def _settings(ctx: AgentContext) -> PowerSettings:
    try:
        return PowerSettings.from_opts(ctx.opts.get("power"))
    except PowerError as err:
        raise CommandExecutionError(f"power: {err}") from err


def _store(ctx: AgentContext) -> PowerStore:
    manager = _manager(ctx)
    if manager is not None:
        return manager.store  # type: ignore[no-any-return]
    return PowerStore(Path(ctx.opts["cachedir"]) / "power", _settings(ctx).history_size)


def _local_manager(ctx: AgentContext) -> Any:
    from autopi_agent.power.manager import PowerManager

    manager = PowerManager.for_agent(ctx.opts, ctx.services)
    if manager.mcu is None:
        raise CommandExecutionError("power: no power MCU configured (power.mcu.port)")
    return manager


def _confirmed(ctx: AgentContext, what: str, confirm: bool) -> None:
    # The daemon registers the master link; a local `autopi-agent call` has none.
    if "master" in ctx.services and confirm is not True:
        raise CommandExecutionError(f"power.{what} powers the dongle down and it goes offline: "
                                    f"run it again with confirm=True")


async def status(ctx: AgentContext) -> dict[str, Any]:
    """Battery voltage (V), ignition, engine running, power state, last wake reason,
    uptimes (s), seconds until the sleep timer fires (``sleep_in``, None while the engine
    runs) and the wake triggers a sleep would use.

    CLI Example::

        cloud-master run car-0001 power.status
    """
    manager = _manager(ctx)
    if manager is not None:
        return manager.status()  # type: ignore[no-any-return]
    local = _local_manager(ctx)
    try:
        await local.step()
        return {**local.status(), "state": "unmanaged"}
    finally:
        local.close()


async def _power_down(ctx: AgentContext, kind: str, delay: float,
                      interval: float | None = None) -> dict[str, Any]:
    if delay < 0 or (interval is not None and interval <= 0):
        raise CommandExecutionError("power: delay must be >= 0 and interval > 0 seconds")
    manager = _manager(ctx)
    try:
        if manager is not None:
            return manager.request(kind, delay=delay, interval=interval)  # type: ignore[no-any-return]
        local = _local_manager(ctx)
        try:
            # Reach the MCU first: a power-down it was never told of (port busy with the
            # daemon, MCU gone) must not halt the Pi from a local call.
            await asyncio.to_thread(local.mcu.status)
            planned = local.request(kind, delay=delay, interval=interval)
            await local.halted.wait()
            return planned  # type: ignore[no-any-return]
        finally:
            await asyncio.to_thread(local.close)
    except PowerError as err:
        raise CommandExecutionError(f"power.{kind}: {err}") from err


async def sleep(ctx: AgentContext, interval: float | None = None, delay: float = 10,
                confirm: bool = False) -> dict[str, Any]:
    """Put the dongle to sleep after ``delay`` seconds: loggers stop, the spool is sent,
    a ``power/sleep`` event goes out, the MCU is told the wake triggers and the Pi halts.
    ``interval`` (s) wakes it by timer after that long (added to the configured triggers).
    Needs confirm=True from the master.

    CLI Example::

        cloud-master run car-0001 power.sleep interval=3600 confirm=True
    """
    _confirmed(ctx, "sleep", confirm)
    return await _power_down(ctx, "sleep", float(delay),
                             None if interval is None else float(interval))


async def hibernate(ctx: AgentContext, delay: float = 10, confirm: bool = False) -> dict[str, Any]:
    """Hibernate after ``delay`` seconds: as power.sleep, but only the ignition wakes the
    dongle (the lowest drain on the battery). Needs confirm=True from the master.

    CLI Example::

        cloud-master run car-0001 power.hibernate confirm=True
    """
    _confirmed(ctx, "hibernate", confirm)
    return await _power_down(ctx, "hibernate", float(delay))


async def shutdown(ctx: AgentContext, delay: float = 10, confirm: bool = False) -> dict[str, Any]:
    """Shut the dongle down after ``delay`` seconds; the next ignition on starts it again.
    Needs confirm=True from the master.

    CLI Example::

        cloud-master run car-0001 power.shutdown confirm=True
    """
    _confirmed(ctx, "shutdown", confirm)
    return await _power_down(ctx, "shutdown", float(delay))


async def reboot(ctx: AgentContext, delay: float = 10, confirm: bool = False) -> dict[str, Any]:
    """Reboot the Pi after ``delay`` seconds (loggers stopped, spool sent first; the MCU
    watchdog stays armed). Needs confirm=True from the master.

    CLI Example::

        cloud-master run car-0001 power.reboot confirm=True
    """
    _confirmed(ctx, "reboot", confirm)
    return await _power_down(ctx, "reboot", float(delay))


def _trigger_list(triggers: Any) -> list[str] | None:
    if triggers is None:
        return None
    if isinstance(triggers, str):
        return [part.strip() for part in triggers.split(",") if part.strip()]
    if isinstance(triggers, (list, tuple)):
        return [str(part) for part in triggers]
    raise CommandExecutionError(f"power.wake_triggers: triggers must be a list, not {triggers!r}")


async def wake_triggers(ctx: AgentContext, triggers: Any = None, timer: float | None = None,
                        voltage_rise: float | None = None) -> dict[str, Any]:
    """Show what wakes the dongle from sleep, or change it (kept across reboots).
    ``triggers``: some of ignition, voltage_rise, timer (a list, or comma-separated);
    ``timer``: seconds of sleep before the timer wakes it; ``voltage_rise``: volts.

    CLI Example::

        cloud-master run car-0001 power.wake_triggers
        cloud-master run car-0001 power.wake_triggers triggers=ignition,timer timer=7200
    """
    wanted = _trigger_list(triggers)
    changing = wanted is not None or timer is not None or voltage_rise is not None
    manager = _manager(ctx)
    try:
        if manager is not None:
            if changing:
                manager.set_wake(wanted, timer, voltage_rise)
            return _plan(manager.settings)
        settings = _settings(ctx).with_wake(**_stored(_store(ctx)))
        if changing:
            settings = settings.with_wake(wanted, timer, voltage_rise)
            _store(ctx).set_wake_overrides({"triggers": list(settings.wake_triggers),
                                            "timer": settings.wake_timer,
                                            "voltage_rise": settings.wake_voltage_rise})
        return _plan(settings)
    except PowerError as err:
        raise CommandExecutionError(f"power.wake_triggers: {err}") from err


def _stored(store: PowerStore) -> dict[str, Any]:
    overrides = store.wake_overrides()
    return {"triggers": overrides.get("triggers") or None, "timer": overrides.get("timer"),
            "voltage_rise": overrides.get("voltage_rise")}


def _plan(settings: PowerSettings) -> dict[str, Any]:
    return {"wake_triggers": list(settings.wake_triggers), "wake_timer": settings.wake_timer,
            "wake_voltage_rise": settings.wake_voltage_rise}


def history(ctx: AgentContext, limit: int = 50) -> list[dict[str, Any]]:
    """Recent power transitions and wake-ups, oldest first (kept across reboots): each
    ``{time, event, ...}`` with event such as ``engine/stop``, ``power/sleep`` (with mode,
    reason and wake triggers) or ``power/wake`` (with reason).

    CLI Example::

        cloud-master run car-0001 power.history limit=20
    """
    return _store(ctx).history(max(1, int(limit)))
