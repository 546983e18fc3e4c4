"""The command lines as a user meets them: help, config errors, confirmation on a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fleet import REPO, write_yaml

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def cli(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=ENV, timeout=60)


@pytest.mark.parametrize("module", ["cloud_master.cli", "autopi_agent.cli"])
def test_help_lists_verbs_and_examples(module: str) -> None:
    proc = cli(module, "--help")
    assert proc.returncode == 0
    assert "serve" in proc.stdout and "examples:" in proc.stdout


def test_config_error_names_file_key_and_expectation(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "master.yaml", {"ret_port": "abc", "root_dir": str(tmp_path)})
    proc = cli("cloud_master.cli", "key", "list", "-c", str(config))
    assert proc.returncode == 2
    assert "master.yaml" in proc.stderr and "ret_port" in proc.stderr and "port" in proc.stderr


def test_agent_config_error(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "agent.yaml", {"acceptance_wait_time": "soon"})
    proc = cli("autopi_agent.cli", "-c", str(config), "call", "test.ping")
    assert proc.returncode == 2 and "acceptance_wait_time" in proc.stderr


def test_local_call_json(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "agent.yaml", {"id": "car-0001", "root_dir": str(tmp_path)})
    proc = cli("autopi_agent.cli", "call", "-c", str(config), "test.echo", "hi", "--out", "json")
    assert proc.returncode == 0 and '"local": "hi"' in proc.stdout
    proc = cli("autopi_agent.cli", "call", "-c", str(config), "nope.missing")
    assert proc.returncode == 1 and "is not available" in proc.stdout


def _pending_key(root: Path) -> Path:
    pre = root / "pki" / "master" / "minions_pre"
    pre.mkdir(parents=True)
    from autopi_proto import rsa

    (pre / "car-0001").write_bytes(rsa.public_pem(rsa.generate_private_key()))
    return pre / "car-0001"


def run_on_tty(argv: list[str], answer: bytes) -> tuple[int, str]:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env=ENV)
    os.close(follower)
    os.write(leader, answer)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    return proc.wait(30), output.decode(errors="replace")


@pytest.mark.parametrize("answer,accepted", [(b"n\n", False), (b"y\n", True)])
def test_key_accept_asks_on_a_terminal(tmp_path: Path, answer: bytes, accepted: bool) -> None:
    pending = _pending_key(tmp_path)
    config = write_yaml(tmp_path / "master.yaml", {"root_dir": str(tmp_path)})
    code, output = run_on_tty([sys.executable, "-m", "cloud_master.cli", "-c", str(config),
                               "key", "accept", "car-0001"], answer)
    assert "Proceed?" in output
    assert (tmp_path / "pki" / "master" / "minions" / "car-0001").exists() is accepted
    assert pending.exists() is not accepted
    assert (code == 0) is accepted


def test_key_accept_without_terminal_needs_no_answer(tmp_path: Path) -> None:
    _pending_key(tmp_path)
    config = write_yaml(tmp_path / "master.yaml", {"root_dir": str(tmp_path)})
    proc = cli("cloud_master.cli", "-c", str(config), "key", "accept", "car-0001")
    assert proc.returncode == 0 and "Proceed?" not in proc.stdout
    assert (tmp_path / "pki" / "master" / "minions" / "car-0001").exists()


def test_masterless_state_apply_and_show_lowstate(tmp_path: Path) -> None:
    srv, pillar, target = tmp_path / "srv", tmp_path / "pillar", tmp_path / "out"
    srv.mkdir()
    pillar.mkdir()
    (srv / "top.sls").write_text("base:\n  '*':\n    - logger\n")
    (srv / "logger.sls").write_text(
        "logger config:\n  file.managed:\n    - name: " + str(target / "logger.yaml") + "\n"
        "    - makedirs: true\n    - contents: 'rpm_every: {{ pillar['rpm_every'] }}'\n")
    (pillar / "top.sls").write_text("base:\n  '*':\n    - car\n")
    (pillar / "car.sls").write_text("rpm_every: 1\n")
    config = write_yaml(tmp_path / "agent.yaml", {"id": "car-0001", "root_dir": str(tmp_path)})
    roots = ["--file-root", str(srv), "--pillar-root", str(pillar)]
    proc = cli("autopi_agent.cli", "-c", str(config), "call", "--local", *roots,
               "state.show_lowstate", "--out", "json")
    assert proc.returncode == 0, proc.stderr
    low = json.loads(proc.stdout)["local"]
    assert [(c["__id__"], c["state"], c["fun"]) for c in low] == [
        ("logger config", "file", "managed")]
    proc = cli("autopi_agent.cli", "-c", str(config), "call", "--local", *roots, "state.apply")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Succeeded: 1 (changed=1)" in proc.stdout
    assert (target / "logger.yaml").read_text().strip() == "rpm_every: 1"
    again = cli("autopi_agent.cli", "-c", str(config), "call", "--local", *roots, "state.apply")
    assert "Succeeded: 1" in again.stdout and "changed=1" not in again.stdout


def test_agent_config_from_environment(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "agent.yaml", {"id": "car-0001", "root_dir": str(tmp_path),
                                                  "grains": {"fleet": "north"}})
    proc = subprocess.run([sys.executable, "-m", "autopi_agent.cli", "call", "grains.get", "fleet"],
                          capture_output=True, text=True, timeout=60,
                          env={**ENV, "AUTOPI_AGENT_CONFIG": str(config)})
    assert proc.returncode == 0 and "north" in proc.stdout
