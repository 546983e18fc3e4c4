"""The gpio execution module and its owner, on gpiozero's mock pin factory."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from autopi_agent.config import ConfigError
from autopi_agent.gpio import (
    GPIO_SCHEMA,
    GpioConfigError,
    GpioOwner,
    GpioPinRefused,
    GpioSettings,
    GpioValueError,
    check_pins,
)
from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.dispatch import Dispatcher, JobResult
from autopi_agent.minion.errors import CommandExecutionError
from autopi_agent.minion.loader import Loader
from autopi_common.config import Field, load

PINS: dict[str, Any] = {
    "ignition_sense": {"pin": 17, "mode": "in", "pull": "down"},
    "status_led": {"pin": 27, "mode": "out"},
    "relay_1": {"pin": 22, "mode": "out", "initial": 0},
    "fan": {"pin": 18, "mode": "pwm", "frequency": 100},
}


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    made = MockFactory(pin_class=MockPWMPin)
    yield made
    made.close()


@pytest.fixture
def ctx(factory: MockFactory) -> Iterator[AgentContext]:
    section: dict[str, Any] = {"pins": PINS}
    context = AgentContext.create({"id": "car-0001", "gpio": section},
                                  loader=Loader({"gpio": "autopi_agent.modules.gpio"},
                                                entry_points=False))
    owner = GpioOwner(GpioSettings.from_opts(section), factory)
    context.services["gpio"] = owner
    yield context
    owner.close()


def run(ctx: AgentContext, fun: str, *arg: Any) -> JobResult:
    async def main() -> JobResult:
        dispatcher = Dispatcher(ctx)
        try:
            return await dispatcher.run(fun, list(arg))
        finally:
            await dispatcher.aclose()

    return asyncio.run(main())


def test_read_input_by_name_and_number(ctx: AgentContext, factory: MockFactory) -> None:
    assert run(ctx, "gpio.read", "ignition_sense").ret == 0
    factory.pin(17).drive_high()
    assert run(ctx, "gpio.read", "ignition_sense").ret == 1
    assert run(ctx, "gpio.read", 17).ret == 1
    assert run(ctx, "gpio.read", "GPIO17").ret == 1
    factory.pin(17).drive_low()
    assert run(ctx, "gpio.read", "17").ret == 0


def test_write_sets_the_mock_pin(ctx: AgentContext, factory: MockFactory) -> None:
    result = run(ctx, "gpio.write", "status_led", "on")
    assert (result.ret, result.retcode) == (1, 0)
    assert factory.pin(27).state
    assert run(ctx, "gpio.read", "status_led").ret == 1
    run(ctx, "gpio.write", 27, 0)
    assert not factory.pin(27).state
    run(ctx, "gpio.write", "relay_1", "high")
    assert factory.pin(22).state


@pytest.mark.parametrize("value", ["2", "maybe", "-1", "0.5"])
def test_write_refuses_bad_values(ctx: AgentContext, factory: MockFactory, value: str) -> None:
    result = run(ctx, "gpio.write", "status_led", value)
    assert not result.success
    assert "0 or 1" in str(result.ret)
    assert not factory.pin(27).state


@pytest.mark.parametrize("pin", ["door_lock", 5, "GPIO5", "99"])
def test_undeclared_pins_are_refused(ctx: AgentContext, factory: MockFactory, pin: Any) -> None:
    for fun, args in (("gpio.read", [pin]), ("gpio.write", [pin, 1]), ("gpio.pwm", [pin, 0.5])):
        result = run(ctx, fun, *args)
        assert not result.success
        assert "not declared in the agent config's gpio.pins" in str(result.ret)
    assert not factory.pin(5).state


def test_input_pins_cannot_be_written(ctx: AgentContext) -> None:
    result = run(ctx, "gpio.write", "ignition_sense", 1)
    assert not result.success
    assert "declared mode in" in str(result.ret)


def test_pulse_counts_edges_and_leaves_the_pin_off(ctx: AgentContext,
                                                   factory: MockFactory) -> None:
    pin = factory.pin(27)
    pin.clear_states()
    result = run(ctx, "gpio.pulse", "status_led", 0.001, 0.001, 3)
    assert (result.ret, result.success) == (3, True)
    rising = [s for prev, s in zip(pin.states, pin.states[1:], strict=False)
              if s.state and not prev.state]
    assert len(rising) == 3
    assert not pin.state


@pytest.mark.parametrize("args", [[0.1, 0.1, 0], [0.1, 0.1, 101], [40, 40, 1], [0, 0, 1],
                                  ["slow", 0.1, 1]])
def test_pulse_is_bounded(ctx: AgentContext, factory: MockFactory, args: list[Any]) -> None:
    result = run(ctx, "gpio.pulse", "status_led", *args)
    assert not result.success
    assert not factory.pin(27).state


def test_pwm_sets_duty_and_frequency(ctx: AgentContext, factory: MockFactory) -> None:
    result = run(ctx, "gpio.pwm", "fan", 0.25, "frequency=200")
    assert result.ret == 0.25
    assert factory.pin(18).state == 0.25
    assert factory.pin(18).frequency == 200
    assert run(ctx, "gpio.read", "fan").ret == 0.25
    assert not run(ctx, "gpio.pwm", "fan", 1.5).success
    assert factory.pin(18).state == 0.25


def test_pwm_needs_a_pwm_pin(ctx: AgentContext) -> None:
    result = run(ctx, "gpio.pwm", "status_led", 0.5)
    assert not result.success
    assert "mode: pwm" in str(result.ret)


def test_pins_lists_declared_pins(ctx: AgentContext) -> None:
    assert run(ctx, "gpio.pins").ret["relay_1"] == {"pin": 22, "mode": "out"}


def test_owner_is_lazy_and_closes_devices(factory: MockFactory) -> None:
    owner = GpioOwner(GpioSettings.from_opts({"pins": PINS}), factory)
    assert factory.pins == {}
    owner.write("relay_1", 1)
    assert factory.pin(22).state
    owner.close()
    with pytest.raises(Exception, match="closed"):
        owner.read("relay_1")
    # A closed device released its pin: a new owner can open it again.
    again = GpioOwner(GpioSettings.from_opts({"pins": PINS}), factory)
    assert again.write("relay_1", 0) == 0.0
    again.close()


def test_owner_errors_are_typed(factory: MockFactory) -> None:
    owner = GpioOwner(GpioSettings.from_opts({"pins": PINS}), factory)
    with pytest.raises(GpioPinRefused):
        owner.read(4)
    with pytest.raises(GpioValueError):
        owner.pulse("status_led", 1, 1, 1000)
    owner.close()


def test_mock_factory_from_config() -> None:
    owner = GpioOwner(GpioSettings.from_opts({"pins": PINS, "pin_factory": "mock"}))
    assert owner.pwm("fan", 0.5) == 0.5
    assert owner.read("fan") == 0.5
    owner.close()


def test_local_call_makes_a_temporary_owner() -> None:
    opts = {"id": "car-0001", "gpio": {"pins": PINS, "pin_factory": "mock"}}
    context = AgentContext.create(opts, loader=Loader({"gpio": "autopi_agent.modules.gpio"},
                                                      entry_points=False))
    assert context.call("gpio.write", "status_led", 1) == 1
    with pytest.raises(CommandExecutionError, match="not declared"):
        context.call("gpio.read", "nope")


@pytest.mark.parametrize("pins, wanted", [
    ({"a": {"pin": 40}}, "BCM GPIO number"),
    ({"a": {"pin": 4, "mode": "analog"}}, "mode"),
    ({"a": {"pin": 4, "pull": "sideways"}}, "pull"),
    ({"a": {"pin": 4}, "b": {"pin": 4}}, "both use GPIO4"),
    ({"17": {"pin": 17}}, "must not be a number"),
    ({"a": {"pin": 4, "colour": "red"}}, "unknown keys"),
    ({"a": {"pin": 4, "mode": "out", "initial": 3}}, "0 or 1"),
    ({"a": 4}, "mapping"),
])
def test_bad_pin_config_is_refused(pins: dict[str, Any], wanted: str) -> None:
    with pytest.raises(GpioConfigError, match=wanted):
        GpioSettings.from_opts({"pins": pins})
    assert wanted in (check_pins(pins) or "")


def test_schema_validates_the_section() -> None:
    assert check_pins(PINS) is None
    # The section as the agent config will hold it (hook: Field("gpio", ..., schema=...)).
    schema = (Field("gpio", "dict", {}, "GPIO pins.", schema=GPIO_SCHEMA),)
    opts = load(None, schema, {"gpio": {"pins": PINS}})
    assert opts["gpio"]["pin_factory"] == ""
    assert GpioSettings.from_opts(opts["gpio"]).resolve(22).name == "relay_1"
    with pytest.raises(ConfigError, match="gpio"):
        load(None, schema, {"gpio": {"pins": {"a": {"pin": 99}}}})
