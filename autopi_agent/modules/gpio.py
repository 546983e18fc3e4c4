"""Execution module ``gpio``: read and drive the dongle's GPIO pins declared in the agent config.

Only pins declared under ``gpio: pins:`` may be used, by name or BCM number::

    gpio:
      pins:
        ignition_sense: {pin: 17, mode: in, pull: down}
        status_led: {pin: 27, mode: out}
        relay_1: {pin: 22, mode: out, initial: 0}
        fan: {pin: 18, mode: pwm, frequency: 100}

Every call goes through the agent's one GPIO owner (``ctx.services["gpio"]``, registered
by the daemon); without one (``autopi-agent call``) a temporary owner is made from the
config and closed when the call ends, which releases the pin (an output may fall back to
its power-on level). An undeclared pin, a pin used against its mode or a bad value fails
the job with a message that says which.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from autopi_agent.gpio import GpioError, GpioOwner, GpioSettings
from autopi_agent.minion.context import AgentContext, current_job
from autopi_agent.minion.errors import CommandExecutionError

__all__ = ["pins", "pulse", "pwm", "read", "write"]


@contextmanager
def _owner(ctx: AgentContext) -> Iterator[GpioOwner]:
    try:
        registered = ctx.services.get("gpio")
        if isinstance(registered, GpioOwner):
            yield registered
            return
        owner = GpioOwner(GpioSettings.from_opts(ctx.opts.get("gpio")))
        try:
            yield owner
        finally:
            owner.close()
    except GpioError as err:
        raise CommandExecutionError(f"gpio: {err}") from err


def _number(value: Any, name: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError) as err:
        raise CommandExecutionError(f"gpio: {name} must be a number, not {value!r}") from err


def read(ctx: AgentContext, pin: str) -> int | float:
    """The level of ``pin`` (a declared name or BCM number): 0 or 1, or the duty cycle of a
    pwm pin. An output pin reads back the level last set.

    CLI Example::

        cloud-master run car-0001 gpio.read ignition_sense
        cloud-master run car-0001 gpio.read 17
    """
    with _owner(ctx) as owner:
        value = owner.read(pin)
        mode = owner.settings.resolve(pin).mode
    return value if mode == "pwm" else int(value)


def write(ctx: AgentContext, pin: str, value: Any) -> int:
    """Set the output ``pin`` to ``value``: 1/0, on/off, high/low or true/false. Returns the
    level set. Input pins are refused.

    CLI Example::

        cloud-master run car-0001 gpio.write status_led on
        cloud-master run car-0001 gpio.write relay_1 0
    """
    with _owner(ctx) as owner:
        return int(owner.write(pin, value))


def pulse(ctx: AgentContext, pin: str, on_time: float = 0.5, off_time: float = 0.5,
          n: int = 1) -> int:
    """Pulse the output ``pin``: on for ``on_time`` seconds, then off for ``off_time``
    seconds, ``n`` times (at most 100 pulses and 60 s in all). The pin is left off, also when
    the job is stopped early. Returns the number of pulses.

    CLI Example::

        cloud-master run car-0001 gpio.pulse status_led 0.2 0.2 5
    """
    on_seconds = _number(on_time, "on_time", float)
    off_seconds = _number(off_time, "off_time", float)
    count = _number(n, "n", int)
    with _owner(ctx) as owner:
        return owner.pulse(pin, on_seconds, off_seconds, count, sleep=current_job().sleep)


def pwm(ctx: AgentContext, pin: str, value: float, frequency: float | None = None) -> float:
    """Set the duty cycle of the pwm ``pin`` to ``value`` (0.0 to 1.0), and its frequency in
    Hz when given. Only pins declared ``mode: pwm`` are accepted. Returns the duty cycle.

    CLI Example::

        cloud-master run car-0001 gpio.pwm fan 0.75
        cloud-master run car-0001 gpio.pwm fan 0.5 frequency=200
    """
    hertz = None if frequency is None else _number(frequency, "frequency", float)
    with _owner(ctx) as owner:
        return owner.pwm(pin, value, hertz)


def pins(ctx: AgentContext) -> dict[str, dict[str, Any]]:
    """The declared pins, by name: BCM number and mode.

    CLI Example::

        cloud-master run car-0001 gpio.pins
    """
    try:
        settings = GpioSettings.from_opts(ctx.opts.get("gpio"))
    except GpioError as err:
        raise CommandExecutionError(f"gpio: {err}") from err
    return {name: {"pin": spec.number, "mode": spec.mode}
            for name, spec in settings.pins.items()}
