"""The OBD beacon: which DTCs are new, the set kept across reboots, connection events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from autopi_agent.beacons.dtc import DtcMemory, compare
from autopi_agent.beacons.obd import ObdBeacon
from autopi_agent.minion.vehicle_events import VehicleEvents
from autopi_agent.obd import ObdAdapterGone, ObdOwner, ObdSettings
from autopi_agent.obd.car import adapter_voltage
from autopi_agent.obd.errors import ObdNoData
from hil import CarConfig, ManualClock, SimulatedCar, parse_fault
from tests.inproc import until

logging.getLogger("obd").setLevel(logging.CRITICAL)  # python-OBD's own complaints

P0301 = {"code": "P0301", "description": "Cylinder 1 Misfire Detected", "ecu": "7E8"}
P0171 = {"code": "P0171", "description": "System Too Lean (Bank 1)", "ecu": "7E8"}
P0420 = {"code": "P0420", "description": "Catalyst Efficiency Below Threshold", "ecu": "7E8"}


def reading(stored: Sequence[Any] = (), pending: Sequence[Any] = (),
            permanent: Sequence[Any] = (), unanswered: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"stored": list(stored), "pending": list(pending),
                           "permanent": list(permanent)}
    if unanswered:
        out["unanswered"] = unanswered
    return out


def codes(new: list[dict[str, Any]]) -> list[str]:
    return sorted(item["code"] for item in new)


# -- pure comparison ----------------------------------------------------------------------

def test_compare_finds_new_codes_once_across_lists() -> None:
    new, seen = compare(frozenset(), reading(pending=[P0420]))
    assert codes(new) == ["P0420"] and new[0]["status"] == ["pending"]
    assert new[0]["description"] == P0420["description"] and new[0]["ecu"] == "7E8"
    # Pending becomes stored (and permanent): the same fault, not announced again.
    new, seen = compare(seen, reading(stored=[P0420, P0301], permanent=[P0420]))
    assert codes(new) == ["P0301"] and new[0]["status"] == ["stored"]
    new, seen = compare(seen, reading(stored=[P0420, P0301], permanent=[P0420]))
    assert new == []
    # The same code from another ECU is another fault.
    new, _ = compare(seen, reading(stored=[P0420, P0301, {**P0301, "ecu": "7E9"}]))
    assert [(item["code"], item["ecu"]) for item in new] == [("P0301", "7E9")]


def test_compare_cleared_codes_are_new_again_but_no_answer_is_not_cleared() -> None:
    _, seen = compare(frozenset(), reading(stored=[P0301], permanent=[P0301]))
    # Service 03 answered nothing this time: what it held last time is kept.
    new, kept = compare(seen, reading(permanent=[P0301], unanswered=["stored"]))
    assert new == [] and ("stored", "P0301", "7E8") in kept
    new, cleared = compare(kept, reading())  # every list answered, empty: cleared
    assert new == [] and cleared == frozenset()
    new, _ = compare(cleared, reading(stored=[P0301]))
    assert codes(new) == ["P0301"]


def test_dtc_memory_round_trip_and_unreadable_file(tmp_path: Path) -> None:
    memory = DtcMemory(tmp_path / "beacons" / "dtc.json")
    assert memory.load() == (None, frozenset())
    memory.save("WAUZZZ8V7JA031575", frozenset({("stored", "P0301", "7E8")}))
    assert memory.load() == ("WAUZZZ8V7JA031575", frozenset({("stored", "P0301", "7E8")}))
    memory.path.write_text("{not json")
    assert memory.load() == (None, frozenset())


# -- polling through a reader --------------------------------------------------------------

class Outbox:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def fire(self, tag: str, data: dict[str, Any]) -> str:
        self.events.append((tag, data))
        return str(len(self.events))

    def tags(self) -> list[str]:
        return [tag for tag, _ in self.events]


def reader(*answers: Mapping[str, Any] | Exception) -> Callable[[], Mapping[str, Any]]:
    left = list(answers)

    def read() -> Mapping[str, Any]:
        answer = left.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return read


def test_poll_announces_new_codes_and_a_failed_read_changes_nothing(tmp_path: Path) -> None:
    outbox = Outbox()

    async def scenario() -> None:
        events = VehicleEvents("car-a", outbox.fire, None)
        beacon = ObdBeacon(events, port="/dev/pts/9", cachedir=tmp_path, dtc_interval=60)
        read = reader(reading(stored=[P0301]), ObdNoData("GET_DTC: NO DATA"),
                      ObdAdapterGone("the adapter went away"), reading(stored=[P0301]),
                      reading(stored=[P0301, P0171]))
        assert codes(await beacon.poll(read)) == ["P0301"]
        assert await beacon.poll(read) == []
        assert await beacon.poll(read) == []
        assert beacon.status()["last_error"].startswith("adapter_gone")
        assert await beacon.poll(read) == []  # still known: the failures cleared nothing
        assert codes(await beacon.poll(read)) == ["P0171"]
        assert beacon.status()["known_codes"] == ["P0171", "P0301"]
        assert beacon.status()["polls"] == 3

    asyncio.run(scenario())
    assert outbox.tags() == ["vehicle/car-a/dtc/new"] * 2
    assert [c["code"] for c in outbox.events[1][1]["codes"]] == ["P0171"]


def test_known_codes_survive_a_reboot_but_not_a_change_of_car(tmp_path: Path) -> None:
    outbox = Outbox()

    async def boot(vin: str, answer: Mapping[str, Any]) -> list[dict[str, Any]]:
        events = VehicleEvents("car-a", outbox.fire, None)
        beacon = ObdBeacon(events, port="/dev/pts/9", cachedir=tmp_path, dtc_interval=60)
        events.attach(asyncio.get_running_loop())
        beacon.connected({"obd": {"vin": vin, "protocol": "6"}})
        found = await beacon.poll(reader(answer))
        await events.drain()
        return found

    first = asyncio.run(boot("WAUZZZ8V7JA031575", reading(stored=[P0301], pending=[P0420])))
    assert codes(first) == ["P0301", "P0420"]
    assert asyncio.run(boot("WAUZZZ8V7JA031575", reading(stored=[P0301, P0420]))) == []
    other_car = asyncio.run(boot("1HGCM82633A004352", reading(stored=[P0301])))
    assert codes(other_car) == ["P0301"]
    assert outbox.tags().count("vehicle/car-a/dtc/new") == 2
    assert outbox.events[-1][1]["vin"] == "1HGCM82633A004352"


def test_rate_limited_codes_are_announced_at_a_later_read(tmp_path: Path) -> None:
    outbox, now = Outbox(), [0.0]

    async def scenario() -> None:
        events = VehicleEvents("car-a", outbox.fire, {"rate_limit": {"dtc/*": 600}},
                               clock=lambda: now[0])
        beacon = ObdBeacon(events, port="p", cachedir=tmp_path, dtc_interval=60)
        read = reader(reading(stored=[P0301]), reading(stored=[P0301, P0171]),
                      reading(stored=[P0301, P0171]))
        assert codes(await beacon.poll(read)) == ["P0301"]
        now[0] += 60
        assert await beacon.poll(read) == []  # limited: P0171 stays unannounced
        now[0] += 600
        assert codes(await beacon.poll(read)) == ["P0171"]

    asyncio.run(scenario())
    assert outbox.tags() == ["vehicle/car-a/dtc/new"] * 2


def test_disabled_dtc_events_are_not_sent(tmp_path: Path) -> None:
    outbox = Outbox()

    async def scenario() -> None:
        events = VehicleEvents("car-a", outbox.fire, {"disabled": ["dtc/*"]})
        beacon = ObdBeacon(events, port="p", cachedir=tmp_path, dtc_interval=60)
        assert await beacon.poll(reader(reading(stored=[P0301]))) == []

    asyncio.run(scenario())
    assert outbox.events == []


# -- connection events from a real owner and a simulated car -------------------------------

def test_owner_hooks_emit_connected_and_disconnected(tmp_path: Path) -> None:
    outbox = Outbox()
    clock = ManualClock()
    car = SimulatedCar(CarConfig(scenario="idle", link_dir=tmp_path, tcp_port=None), clock=clock)
    car.start()
    port = car.pty_path

    async def scenario() -> None:
        events = VehicleEvents("car-a", outbox.fire, None)
        events.attach(asyncio.get_running_loop())
        settings = ObdSettings.from_opts({"port": port, "baudrate": 38400,
                                          "protocol": "6", "timeout": 2.0,
                                          "reconnect_min": 0.2, "reconnect_max": 1.0})
        beacon = ObdBeacon(events, port=settings.port, cachedir=tmp_path, dtc_interval=0)
        owner = ObdOwner(settings, on_connect=beacon.connected,
                         on_disconnect=beacon.disconnected).start(connect=True)
        try:
            await until(lambda: "vehicle/car-a/obd/connected" in outbox.tags(), timeout=60)
            car.inject(parse_fault("adapter-unplugged", {}))
            await asyncio.to_thread(_ask, owner)  # a request makes the owner notice
            assert owner.state == "disconnected"
            await until(lambda: "vehicle/car-a/obd/disconnected" in outbox.tags(), timeout=30)
        finally:
            await asyncio.to_thread(owner.close)
        await events.drain()

    try:
        asyncio.run(scenario())
    finally:
        car.stop()
    connected = dict(outbox.events)["vehicle/car-a/obd/connected"]
    assert connected["vin"] == "WAUZZZ8V7JA031575" and connected["protocol"] == "6"
    assert connected["port"] == port
    lost = dict(outbox.events)["vehicle/car-a/obd/disconnected"]
    assert "adapter" in lost["reason"] and lost["port"] == port
    assert outbox.tags().count("vehicle/car-a/obd/disconnected") == 1


def _ask(owner: ObdOwner) -> None:
    """Ask the adapter for its voltage, expecting it to be gone."""
    try:
        owner.call(adapter_voltage, needs_car=False, timeout=10)
    except ObdAdapterGone:
        return
    raise AssertionError("the unplugged adapter still answered")
