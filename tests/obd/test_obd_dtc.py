"""Trouble codes in the dtc-present scenario: read them, refuse to clear without confirm, clear."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from autopi_agent.obd import ObdOwner
from hil import load_scenario
from tests.obd.helpers import Agent, Bench, start_bench

SCENARIO = load_scenario("dtc-present")


@pytest.fixture(scope="module", params=["sim", pytest.param("rig", marks=pytest.mark.rig)])
def bench(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    bench = start_bench(request.param, request.config, tmp_path_factory.mktemp("dtc"), "dtc-present")
    yield bench
    bench.car.stop()


@pytest.fixture(scope="module")
def agent(bench: Bench) -> Iterator[Agent]:
    with ObdOwner(bench.settings()) as owner:
        yield Agent(owner)


def codes(listed: list[dict[str, str]], ecu: str) -> list[str]:
    return sorted(entry["code"] for entry in listed if entry["ecu"] == ecu)


def test_dtc_clear_needs_confirm_then_stored_and_pending_are_gone(agent: Agent) -> None:
    engine, gearbox = SCENARIO.dtcs["engine"], SCENARIO.dtcs["transmission"]
    before = agent.run("obd.dtc")
    assert before.retcode == 0, before.ret
    assert codes(before.ret["stored"], "7E8") == sorted(engine.stored)
    assert codes(before.ret["stored"], "7E9") == sorted(gearbox.stored)
    assert codes(before.ret["pending"], "7E8") == sorted(engine.pending)
    assert codes(before.ret["permanent"], "7E8") == sorted(engine.permanent)
    assert before.ret["mil"] is True and before.ret["dtc_count"] == 2  # the engine's stored codes
    assert {"code": "P0301", "description": "Cylinder 1 Misfire Detected", "ecu": "7E8"} \
        in before.ret["stored"]

    refused = agent.run("obd.clear_dtc")
    assert refused.retcode == 40 and "confirm=True" in refused.ret
    assert agent.run("obd.dtc").ret == before.ret  # nothing was sent

    cleared = agent.run("obd.clear_dtc", "confirm=True")
    assert cleared.retcode == 0, cleared.ret
    assert cleared.ret == {"cleared": True, "ecus": ["7E8", "7E9"]}
    after = agent.run("obd.dtc")
    assert after.ret["stored"] == [] and after.ret["pending"] == [] and after.ret["mil"] is False
    # SAE J1979: service 04 does not erase permanent codes; the ECU clears them itself
    # once its monitor has seen the fault gone.
    assert codes(after.ret["permanent"], "7E8") == sorted(engine.permanent)
