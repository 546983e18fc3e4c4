"""A state applied from our master to our agent: files from the master's file server, pillar
rendered per minion on the master, Salt's return shape, the highstate summary in the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet import Daemon, MasterDaemon, make_agent, make_master, wait_for


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path, Path]:
    srv, pillar, out = tmp_path / "srv", tmp_path / "pillar", tmp_path / "out"
    (srv / "car").mkdir(parents=True)
    pillar.mkdir()
    (srv / "top.sls").write_text("base:\n  'car-*':\n    - car.logger\n")
    (srv / "car" / "logger.sls").write_text(
        "logger config:\n  file.managed:\n    - name: " + str(out / "{{ grains['id'] }}.yaml") +
        "\n    - source: salt://car/logger.yaml.j2\n    - template: jinja\n    - makedirs: true\n")
    (srv / "car" / "logger.yaml.j2").write_text("vin: {{ pillar['vin'] }}\nrpm_every: 1\n")
    (pillar / "top.sls").write_text("base:\n  'car-0001':\n    - car1\n  'car-0002':\n    - car2\n")
    (pillar / "car1.sls").write_text("vin: WVWZZZ1KZAW000001\n")
    (pillar / "car2.sls").write_text("vin: WVWZZZ1KZAW000002\n")
    return srv, pillar, out


@pytest.fixture
def fleet(tmp_path: Path, trees: tuple[Path, Path, Path]) -> Iterator[tuple[MasterDaemon, Path]]:
    srv, pillar, out = trees
    master = make_master(tmp_path / "m", file_roots={"base": [str(srv)]},
                         pillar_roots={"base": [str(pillar)]}, auto_accept=True)
    master.start()
    agents: list[Daemon] = []
    try:
        wait_for(master.control_ready, what="master")
        for minion_id in ("car-0001", "car-0002"):
            agents.append(make_agent(tmp_path / minion_id, master, minion_id))
            agents[-1].start()
        wait_for(lambda: master.run_json("*", "test.ping", "--timeout", "3")[1].keys() ==
                 {"car-0001", "car-0002"}, timeout=30, what="both agents")
        yield master, out
    finally:
        for agent in agents:
            agent.stop()
        master.stop()


def test_state_apply_from_master(fleet: tuple[MasterDaemon, Path]) -> None:
    master, out = fleet
    dry = master.cli("run", "car-*", "state.apply", "test=True")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert not out.exists()  # test=True changed nothing
    proc = master.cli("run", "car-*", "state.apply")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("Succeeded: 1 (changed=1)") == 2
    # Each car got its own pillar (S4), rendered on the master.
    assert (out / "car-0001.yaml").read_text() == "vin: WVWZZZ1KZAW000001\nrpm_every: 1\n"
    assert (out / "car-0002.yaml").read_text() == "vin: WVWZZZ1KZAW000002\nrpm_every: 1\n"
    code, data = master.run_json("car-0001", "state.apply")
    ret = next(iter(data["car-0001"].values()))
    assert code == 0 and ret["result"] is True and ret["changes"] == {}
    assert ret["__id__"] == "logger config" and ret["__sls__"] == "car.logger"
    code, data = master.run_json("car-0002", "pillar.get", "vin")
    assert data == {"car-0002": "WVWZZZ1KZAW000002"}
