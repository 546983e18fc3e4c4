"""Scenarios and vehicle profiles as data: loading, validation, time stepping, coherence."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil import ManualClock, PowerSim, ScenarioError, VehicleError, available, load_scenario, load_vehicle
from hil.model import VehicleModel
from hil.timeline import StepTimeline, Timeline

VEHICLE = load_vehicle("demo-sedan")


def test_the_tracker_scenarios_are_bundled() -> None:
    assert {"engine-off", "idle", "city-drive", "dtc-present"} <= set(available("scenarios"))
    for name in available("scenarios"):
        assert load_scenario(name).name == name


def test_timeline_interpolates_holds_and_loops() -> None:
    line = Timeline.from_points([[0, 0], [10, 100], [20, 100]], period=20)
    assert line.at(5) == 50 and line.at(15) == 100 and line.at(25) == 50
    assert line.slope(5) == 10 and line.slope(15) == 0
    # area of one lap: triangle 500 + rectangle 1000; two and a half laps
    assert line.integral(20) == pytest.approx(1500)
    assert line.integral(45) == pytest.approx(2 * 1500 + 125)


def test_step_timeline_switches_at_its_times() -> None:
    ignition = StepTimeline.from_points([[0, False], [5, True]])
    assert not ignition.at(4.9) and ignition.at(5) and ignition.at(100)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\ntimeline:\n  warp_speed: 1\n", "unknown signal"),
        ("name: x\nbogus: 1\n", "unknown key"),
        ("name: x\ntimeline:\n  speed: [[5, 1], [2, 3]]\n", "strictly increasing"),
        ("name: x\ndtcs:\n  engine:\n    stored: [Q1234]\n", "not DTCs"),
        ("name: x\nignition: maybe\n", "true/false"),
        ("- just a list\n", "mapping"),
    ],
)
def test_bad_scenarios_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)


def test_unknown_scenario_name_lists_the_bundled_ones() -> None:
    with pytest.raises(ScenarioError, match="city-drive"):
        load_scenario("no-such-scenario")


def test_bad_vehicle_vin_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "car.yaml"
    path.write_text("vin: WAUZZZ8V7JA03157O\necus: [{request_id: 0x7E0}]\n")  # letter O is not allowed
    with pytest.raises(VehicleError, match="vin"):
        load_vehicle(path)


def test_bad_vehicle_pid_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "car.yaml"
    path.write_text("vin: WAUZZZ8V7JA031575\necus: [{request_id: 0x7E0, pids: [WARP_DRIVE]}]\n")
    with pytest.raises(VehicleError, match="WARP_DRIVE"):
        load_vehicle(path)


def model(scenario: str) -> tuple[VehicleModel, ManualClock]:
    clock = ManualClock()
    return VehicleModel(VEHICLE, load_scenario(scenario), clock, PowerSim(clock)), clock


def test_manual_clock_steps_the_scenario_deterministically() -> None:
    car, clock = model("city-drive")
    assert car.signals().speed == 0
    clock.advance(20)
    assert car.signals().speed == pytest.approx(48.75)  # between [14, 48] and [30, 50]
    clock.advance(180)  # one lap later: same place in the loop
    assert car.signals().speed == pytest.approx(48.75)


def test_city_drive_rpm_follows_speed_through_a_gear() -> None:
    car, clock = model("city-drive")
    drivetrain = VEHICLE.drivetrain
    ratios = {r * drivetrain.final_drive for r in drivetrain.gear_ratios}
    moving = 0
    for _ in range(180):
        clock.advance(1)
        s = car.signals()
        if s.speed > 20:
            moving += 1
            overall = s.rpm / (s.speed / 3.6 / drivetrain.tyre_circumference * 60)
            assert min(abs(overall - r) for r in ratios) < 0.05, (car.scenario_time(), s.speed, s.rpm)
        if s.speed == 0:
            assert abs(s.rpm - drivetrain.idle_rpm) < 30
    assert moving > 60


def test_city_drive_load_rises_when_accelerating_and_air_flow_with_it() -> None:
    car, clock = model("city-drive")
    clock.set(9)  # pulling away: 0 -> 48 km/h over 4..14 s
    pulling = car.signals()
    clock.set(22)  # cruising at ~49 km/h
    cruising = car.signals()
    clock.set(33)  # braking from 50 km/h
    braking = car.signals()
    assert pulling.engine_load > cruising.engine_load > braking.engine_load
    assert pulling.throttle_pos > cruising.throttle_pos
    assert pulling.maf > cruising.maf
    assert braking.fuel_rate == 0  # overrun fuel cut


def test_distance_counters_grow_with_the_distance_driven() -> None:
    car, clock = model("city-drive")
    start = car.snapshot("engine").counters.distance_since_clear
    clock.advance(180 * 10)  # ten laps
    driven = car.scenario.odometer(car.scenario_time())
    assert driven > 10  # about 1.37 km a lap
    assert car.snapshot("engine").counters.distance_since_clear == pytest.approx(start + driven)


def test_engine_off_means_no_ignition_and_a_resting_battery() -> None:
    car, _ = model("engine-off")
    assert not car.powered()
    assert car.power.battery_voltage == pytest.approx(12.6)


def test_dtc_present_lights_the_mil_and_counts_distance_with_it() -> None:
    car, clock = model("dtc-present")
    engine = car.snapshot("engine")
    assert engine.dtcs.mil and engine.dtcs.stored == ("P0301", "P0171")
    assert engine.counters.distance_w_mil == pytest.approx(148)
    assert car.snapshot("transmission").dtcs.stored == ("P0741",)


def test_clearing_resets_counters_and_the_mil() -> None:
    car, clock = model("dtc-present")
    clock.advance(120)
    assert car.serve("engine", b"\x04", functional=True) == b"\x44"
    snap = car.snapshot("engine")
    assert not snap.dtcs.mil and snap.dtcs.stored == () and snap.dtcs.permanent == ("P0301",)
    assert snap.counters.distance_since_clear == 0 and snap.counters.minutes_since_clear == 0
    clock.advance(600)
    assert car.snapshot("engine").counters.minutes_since_clear == pytest.approx(10)


def test_power_override_wins_until_released() -> None:
    car, _ = model("idle")
    car.power.override(battery_voltage=11.8, ignition=False)
    assert (car.power.battery_voltage, car.powered()) == (11.8, False)
    car.power.release()
    assert (car.power.battery_voltage, car.powered()) == (14.1, True)
