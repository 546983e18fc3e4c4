"""The power manager's runner: reads the MCU (and the sense pin), heartbeats its watchdog,
feeds the state machine and carries out its decisions (events, logger gate, sleep)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from autopi_agent.minion.clock import Clock, SystemClock
from autopi_agent.portlock import lock_dir
from autopi_agent.power.errors import PowerConfigError, PowerError, PowerStateError
from autopi_agent.power.machine import Emit, EngineGate, PowerDown, PowerMachine, Reading
from autopi_agent.power.mcu import PowerMcu, SerialMcu
from autopi_agent.power.protocol import McuStatus, SleepRequest
from autopi_agent.power.settings import PowerSettings
from autopi_agent.power.store import PowerStore, boot_id

__all__ = ["PowerHooks", "PowerManager", "VehicleEventSink"]

log = structlog.get_logger(__name__)

_COMMAND_TIMEOUT = 60.0


class VehicleEventSink(Protocol):
    """The agent's vehicle event emitter (autopi_agent/minion/vehicle_events.py)."""

    def emit(self, name: str, data: Mapping[str, Any] | None = None) -> bool: ...

    async def emit_now(self, name: str, data: Mapping[str, Any] | None = None) -> bool: ...


async def _nothing() -> None:
    return None


async def _no_flush(budget: float) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class PowerHooks:
    """What the manager drives in the rest of the agent; ``services`` is the agent
    context's (``vehicle_events``, ``vehicle_gate``, ``gpio`` are looked up when used)."""

    stop_loggers: Callable[[], Awaitable[None]] = _nothing
    flush: Callable[[float], Awaitable[bool]] = _no_flush
    services: Mapping[str, Any] | None = None


class PowerManager:
    """One agent's power manager: ``await run()`` until it powers the dongle down."""

    def __init__(self, settings: PowerSettings, mcu: PowerMcu | None, store: PowerStore,
                 hooks: PowerHooks | None = None, *, clock: Clock | None = None) -> None:
        try:
            self.settings = settings.with_wake(**_wake_kwargs(store.wake_overrides()))
        except PowerConfigError as err:  # a damaged overrides file must not stop the manager
            log.warning("power.wake_overrides_ignored", error=str(err))
            self.settings = settings
        self.mcu = mcu
        self.store = store
        self.hooks = hooks or PowerHooks()
        self.clock = clock or SystemClock()
        self.machine = PowerMachine(self.settings)
        self.mcu_status: McuStatus | None = None
        self.mcu_error: str | None = None
        self.wake_reason: str | None = None
        self.halted = asyncio.Event()
        self._down: asyncio.Task[None] | None = None
        self._next_heartbeat = 0.0
        self._started = time.monotonic()

    @classmethod
    def for_agent(cls, opts: Mapping[str, Any], services: Mapping[str, Any],
                  stop_loggers: Callable[[], Awaitable[None]] = _nothing,
                  flush: Callable[[float], Awaitable[bool]] = _no_flush) -> PowerManager:
        """The manager the daemon runs, from the agent config's ``power`` section."""
        settings = PowerSettings.from_opts(opts.get("power"))
        mcu = (SerialMcu(settings.mcu_port, settings.mcu_baudrate, settings.mcu_timeout,
                         lock_dir=lock_dir(opts["cachedir"]))
               if settings.mcu_port else None)
        store = PowerStore(Path(opts["cachedir"]) / "power", settings.history_size)
        return cls(settings, mcu, store, PowerHooks(stop_loggers, flush, services))

    # -- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        """Announce the wake-up, then poll every ``poll_interval`` until powered down."""
        try:
            await self._announce_wake()
            while not self.machine.down:
                await self.step()
                if self.machine.down:
                    break
                await self.clock.sleep(self.settings.poll_interval)
            if self._down is not None:
                await self._down
        finally:
            if self._down is not None and not self._down.done():
                self._down.cancel()

    def close(self) -> None:
        """Release the MCU's port."""
        if self.mcu is not None:
            self.mcu.close()

    async def step(self) -> None:
        """One look at the car: heartbeat when due, read, decide, act."""
        now = self.clock.monotonic()
        if self.mcu is not None and now >= self._next_heartbeat:
            self._next_heartbeat = now + self.settings.heartbeat_interval
            await self._mcu_call(self.mcu.heartbeat, self.settings.watchdog_timeout)
        status = await self._mcu_call(self.mcu.status) if self.mcu is not None else None
        if status is not None:
            self.mcu_status = status
        reading = Reading(now, status.battery_voltage if status else None,
                          await self._ignition(status))
        await self._apply(self.machine.feed(reading))

    async def _mcu_call(self, method: Callable[..., Any], *args: Any) -> Any:
        try:
            result = await asyncio.to_thread(method, *args)
        except PowerError as err:
            if self.mcu_error != str(err):
                log.warning("power.mcu_unavailable", error=str(err))
            self.mcu_error = str(err)
            return None
        self.mcu_error = None
        return result

    async def _ignition(self, status: McuStatus | None) -> bool | None:
        lines: list[bool] = []
        if self.settings.uses_mcu_ignition and status is not None:
            lines.append(status.ignition)
        if self.settings.uses_gpio:
            sensed = await self._gpio_ignition()
            if sensed is not None:
                lines.append(sensed)
        return any(lines) if lines else None

    async def _gpio_ignition(self) -> bool | None:
        gpio = self._service("gpio")
        if gpio is None:
            return None
        try:
            return bool(await asyncio.to_thread(gpio.read, self.settings.ignition_pin))
        except Exception as err:  # a misdeclared pin must not stop the power manager
            log.warning("power.ignition_pin_failed", pin=self.settings.ignition_pin, error=str(err))
            return None

    # -- actions -----------------------------------------------------------------------

    def _service(self, name: str) -> Any:
        return (self.hooks.services or {}).get(name)

    async def _apply(self, actions: Sequence[Any]) -> None:
        for action in actions:
            if isinstance(action, Emit):
                await self._emit(action.name, action.data)
            elif isinstance(action, EngineGate):
                gate = self._service("vehicle_gate")
                if gate is not None:
                    gate.engine_running = action.running
            elif isinstance(action, PowerDown):
                self._start_down(action.kind, action.reason, 0.0, None)

    async def _emit(self, name: str, data: dict[str, Any], *, wait: bool = False) -> None:
        log.info("power.event", name=name, **data)
        await asyncio.to_thread(self.store.record, name, **data)
        events: VehicleEventSink | None = self._service("vehicle_events")
        if events is None:
            return
        if wait:
            await events.emit_now(name, data)
        else:
            events.emit(name, data)

    async def _announce_wake(self) -> None:
        status = await self._mcu_call(self.mcu.status) if self.mcu is not None else None
        self.mcu_status = status or self.mcu_status
        boot_reason = getattr(self.mcu, "boot_reason", None)
        self.wake_reason = boot_reason or (status.wake_reason if status else "unknown")
        this_boot = boot_id()
        last = self.store.last("power/wake")
        if this_boot and last is not None and last.get("boot_id") == this_boot:
            return  # the agent restarted; the dongle did not wake up
        await self._emit("power/wake", {"reason": self.wake_reason, "boot_id": this_boot})

    # -- powering down ---------------------------------------------------------------

    def request(self, kind: str, *, delay: float = 0.0, interval: float | None = None,
                reason: str = "requested") -> dict[str, Any]:
        """Power down (sleep, hibernate, shutdown or reboot) after ``delay`` s; called on
        the agent's loop. PowerStateError if a power-down is already under way."""
        if self._down is not None or (kind != "reboot" and self.machine.down):
            raise PowerStateError(f"the dongle is already powering down ({self.machine.state})")
        if kind != "reboot":
            self.machine.request(kind, reason)
        self._start_down(kind, reason, delay, interval)
        return {"kind": kind, "reason": reason, "delay": delay, **self._wake_plan(kind, interval)}

    def _start_down(self, kind: str, reason: str, delay: float, interval: float | None) -> None:
        if self._down is None:
            self._down = asyncio.ensure_future(self._power_down(kind, reason, delay, interval))

    def _wake_plan(self, kind: str, interval: float | None) -> dict[str, Any]:
        if kind in ("hibernate", "shutdown"):
            return {"wake_triggers": ["ignition"]}
        if kind == "reboot":
            return {}
        triggers = list(self.settings.wake_triggers)
        if interval is not None and "timer" not in triggers:
            triggers.append("timer")
        plan: dict[str, Any] = {"wake_triggers": triggers}
        if "timer" in triggers:
            plan["wake_timer"] = float(interval if interval is not None else self.settings.wake_timer)
        if "voltage_rise" in triggers:
            plan["wake_voltage_rise"] = self.settings.wake_voltage_rise
        return plan

    async def _power_down(self, kind: str, reason: str, delay: float,
                          interval: float | None) -> None:
        if delay > 0:
            await self.clock.sleep(delay)
        gate = self._service("vehicle_gate")
        if gate is not None:
            gate.engine_running = False
        log.info("power.down", kind=kind, reason=reason)
        await self.hooks.stop_loggers()
        plan = self._wake_plan(kind, interval)
        event = "power/reboot" if kind == "reboot" else "power/sleep"
        await self._emit(event, {"mode": kind, "reason": reason,
                                 "battery_voltage": self.machine.battery_voltage, **plan},
                         wait=True)
        if not await self.hooks.flush(self.settings.flush_timeout):
            log.warning("power.flush_incomplete", kind=kind)
        await self._tell_mcu(kind, plan)
        command = self.settings.reboot_command if kind == "reboot" else self.settings.shutdown_command
        await asyncio.to_thread(_run_command, command)
        self.halted.set()

    async def _tell_mcu(self, kind: str, plan: Mapping[str, Any]) -> None:
        if self.mcu is None or kind == "reboot":
            return  # a reboot keeps the watchdog armed: the new boot heartbeats again
        delay = self.settings.power_off_delay
        if kind == "sleep":
            request = SleepRequest(delay, tuple(plan["wake_triggers"]),
                                   float(plan.get("wake_timer", 0.0)),
                                   float(plan.get("wake_voltage_rise", 0.0)))
            await self._mcu_call(self.mcu.sleep, request)
        else:
            await self._mcu_call(self.mcu.hibernate, delay)
        if self.mcu_error is not None:
            log.error("power.mcu_not_told", kind=kind, error=self.mcu_error)

    # -- what power.status shows -----------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The power state as power.status reports it."""
        machine, mcu = self.machine, self.mcu_status
        remaining = machine.sleep_remaining(self.clock.monotonic())
        return {
            "state": machine.state,
            "battery_voltage": machine.battery_voltage,
            "ignition": machine.ignition,
            "engine_running": machine.engine_running,
            "wake_reason": self.wake_reason or (mcu.wake_reason if mcu else None),
            "uptime": round(time.monotonic() - self._started, 1),
            "mcu_uptime": mcu.uptime if mcu else None,
            "watchdog": mcu.watchdog if mcu else None,
            "mcu_error": self.mcu_error,
            "sleep_in": None if remaining is None else round(remaining, 1),
            **self._wake_plan("sleep", None),
        }

    def set_wake(self, triggers: Sequence[str] | None, timer: float | None,
                 voltage_rise: float | None) -> None:
        """Change the wake triggers now and for later boots."""
        self.settings = self.settings.with_wake(triggers, timer, voltage_rise)
        self.machine.settings = self.settings
        overrides = {"triggers": list(self.settings.wake_triggers),
                     "timer": self.settings.wake_timer,
                     "voltage_rise": self.settings.wake_voltage_rise}
        self.store.set_wake_overrides(overrides)


def _wake_kwargs(overrides: Mapping[str, Any]) -> dict[str, Any]:
    triggers = overrides.get("triggers")
    return {"triggers": triggers if isinstance(triggers, list) and triggers else None,
            "timer": overrides.get("timer"), "voltage_rise": overrides.get("voltage_rise")}


def _run_command(command: Sequence[str]) -> None:
    """Run the halt/reboot command; its failure is logged (the MCU cuts the power anyway)."""
    try:
        done = subprocess.run(list(command), capture_output=True, text=True,
                              timeout=_COMMAND_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.error("power.command_failed", command=list(command), error=str(err))
        return
    if done.returncode != 0:
        log.error("power.command_failed", command=list(command), returncode=done.returncode,
                  stderr=done.stderr.strip()[-200:])
    else:
        log.info("power.command_ran", command=list(command))
