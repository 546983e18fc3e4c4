"""The ``power:`` section of the agent config: its schema and the settings value built from it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autopi_agent.power.errors import PowerConfigError
from autopi_agent.power.protocol import WAKE_TRIGGERS
from autopi_common.config import ConfigError, Field, non_negative, positive, validate

__all__ = ["IGNITION_SOURCES", "POWER_SCHEMA", "PowerSettings", "check_wake_triggers"]

IGNITION_SOURCES = ("mcu", "gpio", "both", "voltage")


def _voltage(value: float) -> str | None:
    return None if 5.0 <= value <= 30.0 else "a voltage between 5 and 30 V"


def check_wake_triggers(value: Sequence[str]) -> str | None:
    """None when ``value`` is a non-empty list drawn from WAKE_TRIGGERS."""
    if value and set(value) <= set(WAKE_TRIGGERS):
        return None
    return f"a non-empty list of {', '.join(WAKE_TRIGGERS)}"


def _command(value: Sequence[str]) -> str | None:
    return None if value and value[0].strip() else "a command as a non-empty list of words"


MCU_SCHEMA: tuple[Field, ...] = (
    Field("port", "str", "",
          "The power MCU's UART: /dev/ttyAMA0 on the dongle, a pty, or socket://HOST:PORT "
          "(the HIL simulator). Empty: no MCU (ignition from GPIO only, no sleep/wake)."),
    Field("baudrate", "int", 115200, "Serial speed of the MCU's UART.", check=positive),
    Field("timeout", "float", 2.0, "Seconds one request to the MCU may take.",
          check=positive),
)

IGNITION_SCHEMA: tuple[Field, ...] = (
    Field("source", "str", "mcu",
          "Where the ignition line is read: mcu (its ign line), gpio (the pin below), both "
          "(either), or voltage (no line: the engine voltage alone).",
          choices=IGNITION_SOURCES),
    Field("pin", "str", "ignition_sense", "The gpio pin name of the ignition sense line."),
)

POWER_SCHEMA: tuple[Field, ...] = (
    Field("enabled", "bool", False, "Run the power manager (needs the MCU or a sense pin)."),
    Field("mcu", "dict", {}, "The power MCU (port, baudrate, timeout).", schema=MCU_SCHEMA),
    Field("ignition", "dict", {}, "The ignition line (source, pin).", schema=IGNITION_SCHEMA),
    Field("engine_on_voltage", "float", 13.2,
          "Battery voltage at or above which the engine counts as running (alternator).",
          check=_voltage),
    Field("sleep_after", "float", 1800,
          "Seconds after the engine stops before the dongle sleeps; 0 never sleeps.",
          check=non_negative),
    Field("low_voltage", "float", 12.2,
          "With the engine off, a battery at or below this (held low_voltage_hold s) "
          "makes the dongle hibernate.", check=_voltage),
    Field("low_voltage_hold", "float", 240, "Seconds the low voltage must last.",
          check=non_negative),
    Field("critical_voltage", "float", 11.8,
          "A battery at or below this (held critical_hold s) shuts the dongle down at once.",
          check=_voltage),
    Field("critical_hold", "float", 10,
          "Seconds the critical voltage must last (longer than an engine crank's dip).",
          check=non_negative),
    Field("wake_triggers", "list[str]", list(WAKE_TRIGGERS),
          "What wakes the dongle from sleep: ignition, voltage_rise, timer.",
          check=check_wake_triggers),
    Field("wake_timer", "float", 21600, "Seconds of sleep before the timer wakes it.",
          check=positive),
    Field("wake_voltage_rise", "float", 0.5,
          "A rise of the battery voltage by this many volts wakes it (charger, engine start).",
          check=positive),
    Field("heartbeat_interval", "float", 10, "Seconds between heartbeats to the MCU watchdog.",
          check=positive),
    Field("watchdog_timeout", "float", 120,
          "Seconds without a heartbeat before the MCU power-cycles the Pi; 0 disarms it.",
          check=non_negative),
    Field("power_off_delay", "float", 30,
          "Seconds the MCU waits after a sleep request before it cuts the power (the Pi "
          "shuts down meanwhile).", check=non_negative),
    Field("flush_timeout", "float", 30,
          "Seconds spent delivering the spool to the master before sleeping.",
          check=non_negative),
    Field("poll_interval", "float", 1, "Seconds between MCU status reads.", check=positive),
    Field("shutdown_command", "list[str]", ["systemctl", "poweroff"],
          "Run to halt the Pi before the MCU cuts its power.", check=_command),
    Field("reboot_command", "list[str]", ["systemctl", "reboot"], "Run by power.reboot.",
          check=_command),
    Field("history_size", "int", 200, "Transitions kept in power.history.", check=positive),
)


@dataclass(frozen=True, slots=True)
class PowerSettings:
    """Validated ``power:`` settings (see POWER_SCHEMA for each field's meaning)."""

    enabled: bool = False
    mcu_port: str = ""
    mcu_baudrate: int = 115200
    mcu_timeout: float = 2.0
    ignition_source: str = "mcu"
    ignition_pin: str = "ignition_sense"
    engine_on_voltage: float = 13.2
    sleep_after: float = 1800.0
    low_voltage: float = 12.2
    low_voltage_hold: float = 240.0
    critical_voltage: float = 11.8
    critical_hold: float = 10.0
    wake_triggers: tuple[str, ...] = WAKE_TRIGGERS
    wake_timer: float = 21600.0
    wake_voltage_rise: float = 0.5
    heartbeat_interval: float = 10.0
    watchdog_timeout: float = 120.0
    power_off_delay: float = 30.0
    flush_timeout: float = 30.0
    poll_interval: float = 1.0
    shutdown_command: tuple[str, ...] = ("systemctl", "poweroff")
    reboot_command: tuple[str, ...] = ("systemctl", "reboot")
    history_size: int = 200

    @classmethod
    def from_opts(cls, section: Mapping[str, Any] | None) -> PowerSettings:
        """Settings from the agent config's ``power`` dict (validated here if not yet)."""
        try:
            values = validate(dict(section or {}), POWER_SCHEMA, source="agent config",
                              base_dir=Path.cwd(), prefix="power.")
        except ConfigError as err:
            raise PowerConfigError(str(err)) from err
        mcu, ignition = values.pop("mcu"), values.pop("ignition")
        for key in ("wake_triggers", "shutdown_command", "reboot_command"):
            values[key] = tuple(values[key])
        settings = cls(mcu_port=mcu["port"].strip(), mcu_baudrate=mcu["baudrate"],
                       mcu_timeout=mcu["timeout"], ignition_source=ignition["source"],
                       ignition_pin=ignition["pin"], **values)
        if settings.critical_voltage > settings.low_voltage:
            raise PowerConfigError("power.critical_voltage must not be above power.low_voltage")
        return settings

    @property
    def uses_gpio(self) -> bool:
        """True when the ignition line is read from a GPIO pin."""
        return self.ignition_source in ("gpio", "both")

    @property
    def uses_mcu_ignition(self) -> bool:
        """True when the MCU's ignition line counts."""
        return self.ignition_source in ("mcu", "both")

    def with_wake(self, triggers: Sequence[str] | None = None, timer: float | None = None,
                  voltage_rise: float | None = None) -> PowerSettings:
        """A copy with other wake triggers, timer (s) or voltage rise (V)."""
        if triggers is not None and (problem := check_wake_triggers(list(triggers))):
            raise PowerConfigError(f"wake triggers: expected {problem}, got {list(triggers)}")
        if (timer is not None and timer <= 0) or (voltage_rise is not None and voltage_rise <= 0):
            raise PowerConfigError("the wake timer and voltage rise must be greater than 0")
        return replace(self, wake_triggers=tuple(triggers) if triggers else self.wake_triggers,
                       wake_timer=self.wake_timer if timer is None else float(timer),
                       wake_voltage_rise=(self.wake_voltage_rise if voltage_rise is None
                                          else float(voltage_rise)))
