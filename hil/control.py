"""Run-time control of a simulated car: a line protocol on 127.0.0.1 TCP (text in, JSON out)."""

from __future__ import annotations

import json
import select
import shlex
import socket
import threading
from collections.abc import Callable

import structlog

from hil.car import SimulatedCar
from hil.errors import ControlError, HilError
from hil.faults import FAULT_HELP, parse_fault, parse_kind
from hil.loader import available

log = structlog.get_logger(__name__)

Reply = dict[str, object]

HELP = {
    "status": "status                            where to connect, scenario, power, active faults",
    "scenario": "scenario NAME|PATH                switch scenario (time restarts at 0)",
    "scenarios": "scenarios                         list bundled scenarios",
    "fault": "fault NAME on|off [key=value ...] switch a fault (see 'faults help')",
    "faults": "faults [clear|help]               list active faults, clear them all, or describe them",
    "power": "power voltage V | ignition on|off | release   pin battery voltage / ignition",
    "mcu": "mcu [wake [REASON]]                power MCU: sleep requests, wake triggers, watchdog",
    "help": "help                              this text",
}


def _params(words: list[str]) -> dict[str, str]:
    params = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise HilError(f"expected key=value, got {word!r}")
        params[key.lower()] = value
    return params


def _fault(car: SimulatedCar, args: list[str]) -> Reply:
    if len(args) < 2 or args[1].lower() not in ("on", "off"):
        raise HilError("usage: fault NAME on|off [key=value ...]")
    name, state = args[0], args[1].lower()
    if state == "off":
        if args[2:]:
            raise HilError("fault NAME off takes no parameters")
        return {"fault": str(parse_kind(name)), "was_on": car.clear_fault(name)}
    fault = parse_fault(name, _params(args[2:]), car.vehicle.ecu_names)
    car.inject(fault)
    return fault.describe()


def _faults(car: SimulatedCar, args: list[str]) -> Reply:
    if args == ["clear"]:
        car.clear_faults()
        return {"faults": []}
    if args == ["help"]:
        return {"faults": {str(kind): text for kind, text in FAULT_HELP.items()}}
    if args:
        raise HilError("usage: faults [clear|help]")
    return {"faults": [f.describe() for f in car.faults.active()]}


def _power(car: SimulatedCar, args: list[str]) -> Reply:
    match [a.lower() for a in args]:
        case ["voltage", value]:
            try:
                car.power.override(battery_voltage=float(value))
            except ValueError as err:
                raise HilError(f"power voltage: {err}") from err
        case ["ignition", "on" | "off" as switch]:
            car.power.override(ignition=switch == "on")
        case ["release"]:
            car.power.release()
        case _:
            raise HilError("usage: power voltage V | power ignition on|off | power release")
    state = car.power.state()
    return {"battery_voltage": state.battery_voltage, "ignition": state.ignition}


def _mcu(car: SimulatedCar, args: list[str]) -> Reply:
    if not car.config.mcu:
        raise HilError("this car runs no power MCU simulator")
    match [a.lower() for a in args]:
        case []:
            pass
        case ["wake"]:
            car.mcu.wake()
        case ["wake", reason]:
            car.mcu.wake(reason)
        case _:
            raise HilError("usage: mcu | mcu wake [REASON]")
    return {"mcu": car.mcu.describe()}


def _scenario(car: SimulatedCar, args: list[str]) -> Reply:
    if len(args) != 1:
        raise HilError("usage: scenario NAME|PATH")
    car.set_scenario(args[0])
    return {"scenario": car.model.scenario.name}


COMMANDS: dict[str, Callable[[SimulatedCar, list[str]], Reply]] = {
    "status": lambda car, args: car.status(),
    "scenario": _scenario,
    "scenarios": lambda car, args: {"scenarios": available("scenarios")},
    "fault": _fault,
    "faults": _faults,
    "power": _power,
    "mcu": _mcu,
    "help": lambda car, args: {"commands": HELP},
}


def execute(car: SimulatedCar, line: str) -> Reply:
    """Run one control command; errors come back as `{"ok": false, "error": ...}`."""
    try:
        words = shlex.split(line)
    except ValueError as err:
        return {"ok": False, "error": f"cannot parse {line!r}: {err}"}
    if not words:
        return {"ok": False, "error": "empty command; try 'help'"}
    command = COMMANDS.get(words[0].lower())
    if command is None:
        return {"ok": False, "error": f"unknown command {words[0]!r}; commands: {', '.join(COMMANDS)}"}
    try:
        result = command(car, words[1:])
    except (HilError, ValueError, TimeoutError) as err:
        return {"ok": False, "error": str(err)}
    log.info("control.command", command=words[0], args=words[1:])
    return {"ok": True, **result}


class ControlServer:
    """Serves `execute` on host:port, one JSON line answered per command line, many clients."""

    def __init__(self, car: SimulatedCar, host: str = "127.0.0.1", port: int = 0) -> None:
        self.car = car
        self._listener = socket.create_server((host, port))
        self.host, self.port = self._listener.getsockname()[:2]
        self._stop = threading.Event()
        self._clients: dict[socket.socket, bytearray] = {}
        self._thread = threading.Thread(target=self._run, name="hil-control", daemon=True)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for client in self._clients:
            client.close()
        self._clients.clear()
        self._listener.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self._listener, *self._clients], [], [], 0.1)
            for sock in readable:
                if sock is self._listener:
                    client, _ = sock.accept()
                    client.settimeout(5.0)
                    self._clients[client] = bytearray()
                else:
                    self._read(sock)

    def _read(self, client: socket.socket) -> None:
        try:
            data = client.recv(4096)
        except OSError:
            data = b""
        if not data:
            client.close()
            del self._clients[client]
            return
        buffer = self._clients[client]
        buffer += data
        while b"\n" in buffer:
            line, _, rest = bytes(buffer).partition(b"\n")
            buffer[:] = rest
            reply = execute(self.car, line.decode("utf-8", "replace").strip())
            try:
                client.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                return


def parse_address(address: str) -> tuple[str, int]:
    """`127.0.0.1:4711` or `4711` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    try:
        return (host if sep else "127.0.0.1"), int(port)
    except ValueError as err:
        raise ControlError(f"control address {address!r}: expected HOST:PORT such as 127.0.0.1:4711") from err


def send_command(address: str, line: str, timeout: float = 15.0) -> Reply:
    """Send one command to a running car's control socket and return its JSON reply."""
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(line.encode() + b"\n")
            buffer = b""
            while not buffer.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                buffer += chunk
    except OSError as err:
        raise ControlError(f"cannot reach the simulator's control socket at {host}:{port}: {err}") from err
    try:
        reply = json.loads(buffer)
    except ValueError as err:
        raise ControlError(f"the control socket at {host}:{port} sent no valid reply") from err
    if not isinstance(reply, dict):
        raise ControlError(f"the control socket at {host}:{port} sent {reply!r}")
    return reply
