"""`make demo`: a simulated car, a cloud-master and an agent: enrolment, OBD jobs, a state, telemetry.

Everything lives under a temporary directory with its own ports on 127.0.0.1; both daemons
are stopped at the end (or on Ctrl-C). The commands are printed as you would type them.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def say(text: str) -> None:
    print(f"\n{BOLD}== {text}{RESET}", flush=True)


def shell(tool: str, config: Path, *args: str, check: bool = True) -> str:
    shown = " ".join(shlex.quote(a) for a in (tool, *args))
    print(f"{DIM}${RESET} {shown}", flush=True)
    module = {"cloud-master": "cloud_master.cli", "autopi-agent": "autopi_agent.cli"}[tool]
    proc = subprocess.run([sys.executable, "-m", module, "-c", str(config), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    out = (proc.stdout + proc.stderr).rstrip()
    if out:
        print(out, flush=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"demo: `{shown}` failed with exit status {proc.returncode}")
    return proc.stdout


def shell_quiet(config: Path, *args: str) -> str:
    """A cloud-master command's output, not shown."""
    return subprocess.run([sys.executable, "-m", "cloud_master.cli", "-c", str(config), *args],
                          capture_output=True, text=True, cwd=REPO).stdout


def wait_until(check, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise SystemExit(f"demo: timed out waiting for {what}")


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=out, cwd=REPO, start_new_session=True)


def demo_trees(root: Path) -> tuple[Path, Path]:
    """A state tree that declares a telemetry logger and a settings file, and per-car pillar."""
    srv, pillar = root / "srv", root / "pillar"
    (srv / "car").mkdir(parents=True)
    pillar.mkdir()
    (srv / "top.sls").write_text("base:\n  'car-*':\n    - car.settings\n")
    (srv / "car" / "settings.sls").write_text(
        "engine:\n  obd.logger:\n    - pids: {{ pillar['pids'] | tojson }}\n"
        "    - interval: 1\n"
        "logger settings:\n  file.managed:\n"
        f"    - name: {root}/agent/etc/vehicle.yaml\n"
        "    - source: salt://car/vehicle.yaml.j2\n    - template: jinja\n    - makedirs: true\n")
    (srv / "car" / "vehicle.yaml.j2").write_text(
        "# installed by the cloud master\nvehicle: {{ pillar['vehicle'] }}\n"
        "pids: {{ pillar['pids'] | join(', ') }}\n")
    (pillar / "top.sls").write_text("base:\n  'car-0001':\n    - car1\n")
    (pillar / "car1.sls").write_text(
        "vehicle: demo sedan\npids: [RPM, SPEED, COOLANT_TEMP, ENGINE_LOAD]\n")
    return srv, pillar


def events_seen(log: Path, since: int = 0) -> list[str]:
    """The vehicle events `cloud-master events` has printed so far (tag and a short body)."""
    lines = log.read_text().splitlines() if log.exists() else []
    return [line[:150] for line in lines[since:] if "vehicle/" in line]


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="autopi-demo-"))
    master_cfg = root / "master.yaml"
    agent_cfg = root / "agent.yaml"
    ret_port, pub_port = free_port(), free_port()
    srv, pillar = demo_trees(root)
    master_cfg.write_text(yaml.safe_dump({
        "interface": "127.0.0.1", "ret_port": ret_port, "publish_port": pub_port,
        "root_dir": str(root / "master"), "log_format": "json",
        "file_roots": {"base": [str(srv)]}, "pillar_roots": {"base": [str(pillar)]}}))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        say("A simulated car: ECUs on a CAN bus, an ELM327 adapter on a pty (hil/)")
        info = root / "car.json"
        procs.append(start([sys.executable, "-m", "hil", "run", "--scenario", "city-drive",
                            "--tcp-port", "-1", "--info-file", str(info)], root / "car.log"))
        wait_until(info.exists, "the simulated car")
        car = json.loads(info.read_text())
        print(f"adapter on {car['pty']}", flush=True)
        agent_cfg.write_text(yaml.safe_dump({
            "id": "car-0001", "master": "127.0.0.1", "master_port": ret_port,
            "publish_port": pub_port, "root_dir": str(root / "agent"), "log_format": "json",
            "acceptance_wait_time": 1, "grains": {"fleet": "demo"},
            "obd": {"port": car["pty"], "baudrate": 38400},
            "vehicle_events": {"dtc_interval": 5},
            # Short timers so the trip fits a demo; "poweroff" here only writes a file.
            "power": {"enabled": True, "mcu": {"port": car["mcu_pty"]}, "sleep_after": 8,
                      "poll_interval": 0.5, "heartbeat_interval": 2, "power_off_delay": 5,
                      "wake_triggers": ["ignition", "voltage_rise"],
                      "shutdown_command": ["sh", "-c", f"date > {root}/poweroff-requested"]}}))
        say(f"A cloud master on 127.0.0.1:{pub_port}/{ret_port} (state in {root})")
        procs.append(start([sys.executable, "-m", "cloud_master.cli", "-c", str(master_cfg),
                            "serve"], root / "master.log"))
        wait_until(lambda: (root / "master" / "run" / "master-control.ipc").exists(), "the master")
        events = root / "events.log"
        procs.append(start([sys.executable, "-m", "cloud_master.cli", "-c", str(master_cfg),
                            "events", "--tag", "vehicle/*"], events))
        say("The dongle's agent starts and asks to enrol")
        procs.append(start([sys.executable, "-m", "autopi_agent.cli", "-c", str(agent_cfg),
                            "serve"], root / "agent.log"))
        wait_until(lambda: (root / "master" / "pki" / "master" / "minions_pre" / "car-0001").exists(),
                   "the agent's key")
        shell("cloud-master", master_cfg, "key", "list")
        shell("autopi-agent", agent_cfg, "key", "finger")
        shell("cloud-master", master_cfg, "key", "finger", "car-0001")
        say("The operator checks the fingerprint and accepts the key")
        shell("cloud-master", master_cfg, "key", "accept", "car-0001", "-y")
        wait_until(lambda: '"car-0001": true' in subprocess.run(
            [sys.executable, "-m", "cloud_master.cli", "-c", str(master_cfg), "run", "*",
             "test.ping", "--out", "json", "--timeout", "2"], capture_output=True, text=True,
            cwd=REPO).stdout, "the agent to answer")
        say("Remote jobs, answered by the car")
        shell("cloud-master", master_cfg, "run", "*", "test.ping")
        shell("cloud-master", master_cfg, "run", "car-0001", "obd.query", "RPM")
        shell("cloud-master", master_cfg, "run", "car-0001", "obd.query", "SPEED", "--out", "json")
        shell("cloud-master", master_cfg, "run", "car-0001", "obd.vin")
        shell("cloud-master", master_cfg, "run", "-G", "fleet:demo", "obd.query_many", "COOLANT_TEMP",
              "ENGINE_LOAD", "--out", "table")
        shell("cloud-master", master_cfg, "run", "car-0001", "nope.missing", check=False)
        say("A state from the master: a telemetry logger and a file, from this car's pillar")
        shell("cloud-master", master_cfg, "run", "car-0001", "state.apply")
        print((root / "agent" / "etc" / "vehicle.yaml").read_text(), flush=True)
        shell("cloud-master", master_cfg, "run", "car-0001", "loggers.status", "--out", "json")
        say("Telemetry from the logger the state installed, stored on the master")
        time.sleep(4)
        shell("cloud-master", master_cfg, "telemetry", "latest")
        shell("cloud-master", master_cfg, "telemetry", "export", "car-0001", "RPM", "SPEED",
              "--since", "5m", "--format", "csv", "-o", str(root / "trip.csv"))
        plot = ["telemetry", "plot", "car-0001", "RPM", "SPEED", "--since", "5m", "-o",
                str(root / "trip.png")]
        shell("cloud-master", master_cfg, *plot, check=False)
        hil = [sys.executable, "-m", "hil"]
        control = ["--control", car["control"]]
        say("A trouble code appears: dtc/new event, and the reactor reads the codes")
        subprocess.run([*hil, "scenario", "dtc-present", *control], check=True, cwd=REPO)
        wait_until(lambda: any("dtc/new" in line for line in events_seen(events)),
                   "the dtc/new event")
        wait_until(lambda: '"obd.dtc"' in shell_quiet(master_cfg, "jobs", "list", "--out", "json"),
                   "the reactor's obd.dtc job")
        say("The job cache (the reactor's obd.dtc job is there)")
        shell("cloud-master", master_cfg, "jobs", "list", "--limit", "5")
        say("End of the trip: ignition off, engine stop, and after the sleep timer the dongle sleeps")
        shell("cloud-master", master_cfg, "run", "car-0001", "power.status")
        subprocess.run([*hil, "scenario", "engine-off", *control], check=True, cwd=REPO)
        wait_until(lambda: any("power/sleep" in line for line in events_seen(events)),
                   "the power/sleep event", timeout=60)
        wait_until((root / "poweroff-requested").exists, "the shutdown command")
        subprocess.run([*hil, "mcu", *control], check=True, cwd=REPO)
        say("Vehicle events the master received during the trip (cloud-master events)")
        print("\n".join(events_seen(events)), flush=True)
        say("A local call on the dongle, no master needed")
        shell("autopi-agent", agent_cfg, "call", "test.version")
        say(f"Done. Logs and the trip export in {root}")
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
