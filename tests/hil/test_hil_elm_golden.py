"""ELM327 request lines -> exact adapter output, one golden case a file, over a real virtual CAN bus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hil import AdapterIdentity, ManualClock
from hil.car import STN_IDENTITY
from tests.hil.helpers import CarFactory

GOLDEN = sorted((Path(__file__).parent / "golden" / "elm").glob("*.json"))


def _lines(text: str) -> list[str]:
    return text.split("\r")


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_elm_golden(path: Path, make_car: CarFactory) -> None:
    case = json.loads(path.read_text())
    clock = ManualClock()
    car = make_car(clock, scenario=case["scenario"], adapter=False)
    clock.advance(case.get("time", 0.0))
    elm = car.open_adapter(STN_IDENTITY if case.get("identity") == "stn" else AdapterIdentity())
    for line in case["setup"]:
        elm.handle(line.encode())
    reply = elm.handle(case["request"].encode())
    output = (reply.echo + reply.body).decode("ascii")
    if case.get("unordered"):
        # several ECUs answer in an order the bus decides; compare the lines as a multiset
        assert sorted(_lines(output)) == sorted(_lines(case["output"])), case.get("note")
    else:
        assert output == case["output"], case.get("note")
