"""`python -m hil`: help, a car in a subprocess controlled through its control socket, clean signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hil import send_command
from hil.cli import main
from tests.hil.helpers import ElmClient

REPO = Path(__file__).resolve().parents[2]


def test_help_lists_commands_and_faults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "fault" in out and "scenario" in out and "HIL_CONTROL" in out
    with pytest.raises(SystemExit):
        main(["fault", "--help"])
    assert "adapter-unplugged" in capsys.readouterr().out


def test_list_names_the_bundled_data(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "demo-sedan" in out and "city-drive" in out


def test_client_without_a_car_says_how_to_name_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HIL_CONTROL", raising=False)
    assert main(["status"]) == 2
    assert "HIL_CONTROL" in capsys.readouterr().err


def hil(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hil", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[str], dict[str, object]]]]:
    """Start `python -m hil run ...`; wait until it wrote where to connect; kill it if a test did not."""
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
        info = tmp_path / f"info-{len(processes)}.json"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hil",
                "run",
                "--info-file",
                str(info),
                "--link-dir",
                str(tmp_path),
                *args,
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        deadline = time.monotonic() + 20
        while not info.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"simulator did not start: {process.communicate(timeout=5)}")
            time.sleep(0.05)
        return process, json.loads(info.read_text())

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_run_fault_status_and_sigterm(
    running: Callable[..., tuple[subprocess.Popen[str], dict[str, object]]],
) -> None:
    process, info = running("--tcp-port", "0", "--reset-delay", "0.05", "--baud", "0")
    control = str(info["control"])
    client = ElmClient(str(info["pty"]))
    try:
        for line in ("ATE0", "ATH1", "ATSP6", "ATSH7E0"):
            client.lines(line)
        assert client.lines("010C")[0].startswith("7E8 04 41 0C")
        injected = hil("fault", "--control", control, "silent-ecu", "on", "ecu=engine")
        assert injected.returncode == 0 and json.loads(injected.stdout)["fault"] == "silent-ecu"
        assert client.lines("010C") == ["NO DATA"]
        status = json.loads(hil("status", "--control", control).stdout)
        assert status["faults"] == [{"fault": "silent-ecu", "ecu": "engine"}]
        refused = hil("fault", "--control", control, "slow-ecu", "on", "delay=later")
        assert refused.returncode == 1 and "expected a number" in refused.stdout
        assert hil("fault", "--control", control, "silent-ecu", "off").returncode == 0
        assert client.lines("010C")[0].startswith("7E8 04 41 0C")
        assert send_command(control, "scenario dtc-present")["scenario"] == "dtc-present"
        assert client.lines("03") == ["7E8 06 43 02 03 01 01 71"]
    finally:
        client.close()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert f"pty: {info['pty']}" in out and out.rstrip().endswith("stopped")


def test_sigint_stops_cleanly_and_removes_the_pty_link(
    running: Callable[..., tuple[subprocess.Popen[str], dict[str, object]]],
) -> None:
    process, info = running("--tcp-port", "-1", "--scenario", "engine-off")
    assert Path(str(info["pty"])).exists() and "tcp_port" not in info
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert not Path(str(info["pty"])).exists()


def test_run_refuses_an_unknown_scenario() -> None:
    result = hil("run", "--scenario", "moon-landing", "--tcp-port", "-1", "--no-pty")
    assert result.returncode == 1 and "no scenario 'moon-landing'" in result.stderr
