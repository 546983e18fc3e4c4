"""The GPIO backend: the ``gpio:`` config section and the one owner of an agent's gpiozero devices.

GpioError
 ├── GpioConfigError (ValueError)     the gpio section is malformed
 ├── GpioPinRefused (PermissionError) the pin is not declared in the config, or not for that use
 └── GpioValueError (ValueError)      a value, time or count out of range
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from autopi_common.config import Field

__all__ = ["GPIO_SCHEMA", "MAX_PULSES", "MAX_PULSE_SECONDS", "GpioConfigError", "GpioError",
           "GpioOwner", "GpioPinRefused", "GpioSettings", "GpioValueError", "PinSpec",
           "check_pins", "parse_level"]

log = structlog.get_logger(__name__)

MODES = ("in", "out", "pwm")
PULLS = ("up", "down", "none")
# BCM numbers of the 40-pin header's GPIOs.
MAX_BCM = 27
MAX_PULSES = 100
MAX_PULSE_SECONDS = 60.0
_TRUE = frozenset({"1", "on", "high", "true", "yes"})
_FALSE = frozenset({"0", "off", "low", "false", "no"})


class GpioError(Exception):
    """Root of the GPIO backend's errors."""


class GpioConfigError(GpioError, ValueError):
    """The ``gpio:`` config section is malformed."""


class GpioPinRefused(GpioError, PermissionError):
    """The pin is not declared in the config, or is declared for another use."""


class GpioValueError(GpioError, ValueError):
    """A level, duty cycle, time or count is out of range."""


@dataclass(frozen=True, slots=True)
class PinSpec:
    """One declared pin: BCM ``number``, ``mode`` in/out/pwm, input ``pull``, output ``initial``."""

    name: str
    number: int
    mode: str
    pull: str = "down"
    initial: float = 0.0
    active_high: bool = True
    frequency: float = 100.0


def _pin_spec(name: str, raw: Any) -> PinSpec:
    where = f"gpio.pins.{name}"
    if not isinstance(raw, Mapping):
        raise GpioConfigError(f"{where}: expected a mapping such as {{pin: 17, mode: in}}")
    unknown = set(raw) - {"pin", "mode", "pull", "initial", "active_high", "frequency"}
    if unknown:
        raise GpioConfigError(f"{where}: unknown keys {sorted(unknown)}")
    if name.isdigit():
        raise GpioConfigError(f"{where}: a pin name must not be a number (it reads as a BCM pin)")
    number = raw.get("pin")
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= MAX_BCM:
        raise GpioConfigError(f"{where}.pin: expected a BCM GPIO number 0-{MAX_BCM}, got {number!r}")
    mode = str(raw.get("mode", "in"))
    if mode not in MODES:
        raise GpioConfigError(f"{where}.mode: expected one of {', '.join(MODES)}, got {mode!r}")
    pull = str(raw.get("pull", "down"))
    if pull not in PULLS:
        raise GpioConfigError(f"{where}.pull: expected one of {', '.join(PULLS)}, got {pull!r}")
    try:
        initial = parse_level(raw.get("initial", 0), pwm=mode == "pwm")
        frequency = float(raw.get("frequency", 100.0))
    except (GpioValueError, TypeError, ValueError) as err:
        raise GpioConfigError(f"{where}: {err}") from err
    if not 0 < frequency <= 100_000:
        raise GpioConfigError(f"{where}.frequency: expected 0 < Hz <= 100000, got {frequency:g}")
    return PinSpec(name, number, mode, pull, initial, bool(raw.get("active_high", True)),
                   frequency)


def check_pins(value: Mapping[str, Any]) -> str | None:
    """Config check for ``gpio.pins``: None when valid, else what was expected."""
    try:
        GpioSettings.from_opts({"pins": value})
    except GpioConfigError as err:
        return str(err)
    return None


GPIO_SCHEMA: tuple[Field, ...] = (
    Field("pins", "dict", {},
          "Pins jobs may use, by name: {NAME: {pin: BCM number, mode: in|out|pwm, "
          "pull: up|down|none (in), initial: 0|1 or duty (out, pwm), active_high: bool, "
          "frequency: Hz (pwm)}}. Undeclared pins are refused.", check=check_pins),
    Field("pin_factory", "str", "",
          "gpiozero pin factory: empty for gpiozero's choice (lgpio on a Pi), or mock "
          "for simulators.", choices=("", "mock", "lgpio", "rpigpio", "pigpio", "native")),
)


@dataclass(frozen=True, slots=True)
class GpioSettings:
    """The validated ``gpio:`` section: declared pins by name, and the pin factory."""

    pins: Mapping[str, PinSpec]
    pin_factory: str = ""

    @classmethod
    def from_opts(cls, section: Mapping[str, Any] | None) -> GpioSettings:
        """Settings from the agent config's ``gpio`` mapping; raises GpioConfigError."""
        section = section or {}
        raw_pins = section.get("pins") or {}
        if not isinstance(raw_pins, Mapping):
            raise GpioConfigError("gpio.pins: expected a mapping of pin names")
        pins = {str(name): _pin_spec(str(name), raw) for name, raw in raw_pins.items()}
        numbers: dict[int, str] = {}
        for spec in pins.values():
            if spec.number in numbers:
                raise GpioConfigError(f"gpio.pins: {spec.name} and {numbers[spec.number]} "
                                      f"both use GPIO{spec.number}")
            numbers[spec.number] = spec.name
        return cls(pins=pins, pin_factory=str(section.get("pin_factory", "")))

    def resolve(self, pin: str | int) -> PinSpec:
        """The declared pin named ``pin`` or with BCM number ``pin``; else GpioPinRefused."""
        text = str(pin).strip()
        if text in self.pins:
            return self.pins[text]
        digits = text.upper().removeprefix("GPIO")
        if digits.isdigit():
            for spec in self.pins.values():
                if spec.number == int(digits):
                    return spec
        declared = ", ".join(f"{s.name} (GPIO{s.number})" for s in self.pins.values()) or "none"
        raise GpioPinRefused(f"pin {pin!r} is not declared in the agent config's gpio.pins "
                             f"(declared: {declared}); add it there to use it")


def parse_level(value: Any, *, pwm: bool = False) -> float:
    """A level as 0.0/1.0 (on/off, high/low, true/false, 0/1) or, when ``pwm``, a duty 0-1."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return 1.0 if value.strip().lower() in _TRUE else 0.0
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if pwm and 0.0 <= number <= 1.0:
        return number
    if number in (0.0, 1.0):
        return number
    wanted = "a duty cycle from 0.0 to 1.0" if pwm else "0 or 1 (on/off, high/low)"
    raise GpioValueError(f"expected {wanted}, got {value!r}")


class GpioOwner:
    """Owns one agent's gpiozero devices: made on first use, serialised per pin, closed once.

    ``factory`` is a gpiozero pin factory (such as ``MockFactory()``); None makes one from
    the settings' ``pin_factory`` (gpiozero's default when empty).
    """

    def __init__(self, settings: GpioSettings, factory: Any = None) -> None:
        self.settings = settings
        self._factory = factory
        self._own_factory = factory is None
        self._devices: dict[int, Any] = {}
        self._pin_locks: dict[int, threading.Lock] = {}
        self._lock = threading.Lock()
        self._closed = False

    def read(self, pin: str | int) -> float:
        """The pin's level: 0 or 1 for in/out pins, the duty cycle for a pwm pin."""
        spec = self.settings.resolve(pin)
        with self._pin(spec) as device:
            value = float(device.value)
        return value if spec.mode == "pwm" else float(round(value))

    def write(self, pin: str | int, value: Any) -> float:
        """Set an out or pwm pin to 0 or 1; returns the level set."""
        spec = self._output(pin, "write")
        level = parse_level(value)
        with self._pin(spec) as device:
            device.value = level
        log.info("gpio.write", pin=spec.name, number=spec.number, value=level)
        return level

    def pwm(self, pin: str | int, value: Any, frequency: float | None = None) -> float:
        """Set a pwm pin's duty cycle (0-1), optionally its frequency in Hz."""
        spec = self.settings.resolve(pin)
        if spec.mode != "pwm":
            raise GpioPinRefused(f"pin {spec.name} (GPIO{spec.number}) is declared mode "
                                 f"{spec.mode}; declare it with mode: pwm to use gpio.pwm")
        duty = parse_level(value, pwm=True)
        with self._pin(spec) as device:
            if frequency is not None:
                if not 0 < float(frequency) <= 100_000:
                    raise GpioValueError(f"frequency must be 0 < Hz <= 100000, got {frequency!r}")
                device.frequency = float(frequency)
            device.value = duty
        log.info("gpio.pwm", pin=spec.name, number=spec.number, duty=duty, frequency=frequency)
        return duty

    def pulse(self, pin: str | int, on_time: float, off_time: float, count: int,
              sleep: Callable[[float], None] = time.sleep) -> int:
        """Turn an output on for ``on_time`` s then off for ``off_time`` s, ``count`` times.

        Bounded: at most MAX_PULSES pulses and MAX_PULSE_SECONDS in all. ``sleep`` lets a
        job's cancellable sleep stop it early; the pin is left off either way.
        """
        spec = self._output(pin, "pulse")
        if count < 1 or count > MAX_PULSES:
            raise GpioValueError(f"count must be 1-{MAX_PULSES}, got {count}")
        if on_time <= 0 or off_time < 0:
            raise GpioValueError("on_time must be > 0 and off_time >= 0 seconds")
        if (on_time + off_time) * count > MAX_PULSE_SECONDS:
            raise GpioValueError(f"a pulse train may last at most {MAX_PULSE_SECONDS:g} s, "
                                 f"not {(on_time + off_time) * count:g} s")
        with self._pin(spec) as device:
            try:
                for index in range(count):
                    device.value = 1.0
                    sleep(on_time)
                    device.value = 0.0
                    if index < count - 1 or off_time:
                        sleep(off_time)
            finally:
                device.value = 0.0
        log.info("gpio.pulse", pin=spec.name, number=spec.number, count=count)
        return count

    def close(self) -> None:
        """Release every device (and the pin factory if this owner made it); idempotent."""
        with self._lock:
            self._closed = True
            devices, self._devices = self._devices, {}
        for device in devices.values():
            device.close()
        if self._own_factory and self._factory is not None:
            self._factory.close()
            self._factory = None

    def _output(self, pin: str | int, action: str) -> PinSpec:
        spec = self.settings.resolve(pin)
        if spec.mode == "in":
            raise GpioPinRefused(f"pin {spec.name} (GPIO{spec.number}) is declared mode in; "
                                 f"gpio.{action} needs mode out or pwm")
        return spec

    def _pin(self, spec: PinSpec) -> _Held:
        with self._lock:
            if self._closed:
                raise GpioError("the GPIO owner is closed (the agent is stopping)")
            device = self._devices.get(spec.number)
            if device is None:
                device = self._devices[spec.number] = self._make(spec)
            lock = self._pin_locks.setdefault(spec.number, threading.Lock())
        return _Held(device, lock)

    def _make(self, spec: PinSpec) -> Any:
        # gpiozero imports lazily: its import costs memory an agent without GPIO does not pay.
        import gpiozero

        factory = self._factory_locked()
        try:
            if spec.mode == "in":
                pull = {"up": True, "down": False, "none": None}[spec.pull]
                active = spec.active_high if pull is None else None
                return gpiozero.DigitalInputDevice(spec.number, pull_up=pull,
                                                   active_state=active, pin_factory=factory)
            if spec.mode == "out":
                return gpiozero.DigitalOutputDevice(spec.number, active_high=spec.active_high,
                                                    initial_value=bool(spec.initial),
                                                    pin_factory=factory)
            return gpiozero.PWMOutputDevice(spec.number, active_high=spec.active_high,
                                            initial_value=spec.initial,
                                            frequency=spec.frequency, pin_factory=factory)
        except gpiozero.GPIOZeroError as err:
            raise GpioError(f"cannot open GPIO{spec.number} ({spec.name}) as {spec.mode}: "
                            f"{type(err).__name__}: {err}") from err

    def _factory_locked(self) -> Any:
        if self._factory is None and self.settings.pin_factory == "mock":
            from gpiozero.pins.mock import MockFactory, MockPWMPin

            self._factory = MockFactory(pin_class=MockPWMPin)
        return self._factory


class _Held:
    """A device with its pin lock held for the duration of a ``with`` block."""

    __slots__ = ("device", "lock")

    def __init__(self, device: Any, lock: threading.Lock) -> None:
        self.device = device
        self.lock = lock

    def __enter__(self) -> Any:
        self.lock.acquire()
        return self.device

    def __exit__(self, *exc: object) -> None:
        self.lock.release()
