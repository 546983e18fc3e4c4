"""`python -m hil` / `hil`: run a simulated car, and control a running one."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import structlog

from hil.canbus import BusConfig
from hil.car import CarConfig, SimulatedCar
from hil.control import ControlServer, send_command
from hil.errors import HilError
from hil.faults import FAULT_HELP
from hil.loader import available

DESCRIPTION = """\
Hardware-in-the-loop vehicle simulator: SAE J1979 ECUs on a CAN bus and an ELM327 adapter
on a pty and a TCP port, with scenarios and faults you can switch while it runs.

  python -m hil run --scenario city-drive        start a car; prints where to connect
  python -m hil fault silent-ecu on ecu=engine   inject a fault into the running car
  python -m hil scenario dtc-present             switch scenario
  python -m hil status                           what the running car is doing

Client commands find the car through --control HOST:PORT or $HIL_CONTROL.
"""

FAULTS_EPILOG = "faults:\n" + "\n".join(f"  {k:<18} {v}" for k, v in FAULT_HELP.items())


def _option(value: str) -> tuple[str, object]:
    key, sep, raw = value.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected key=value, got {value!r}")
    parsed: object = raw
    for convert in (int, float):
        try:
            parsed = convert(raw)
            break
        except ValueError:
            continue
    return key, parsed


def _run_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser(
        "run",
        help="start a simulated car (the default command)",
        description="Start a simulated car and keep it running until SIGINT/SIGTERM.",
        epilog=FAULTS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--vehicle",
        default="demo-sedan",
        help=f"profile name or YAML path ({', '.join(available('vehicles'))})",
    )
    run.add_argument(
        "--scenario", default="idle", help=f"scenario name or YAML path ({', '.join(available('scenarios'))})"
    )
    run.add_argument(
        "--interface", default="virtual", help="python-can interface: virtual, udp_multicast, socketcan ..."
    )
    run.add_argument("--channel", help="bus channel (default: a private virtual channel, 239.74.163.2, can0)")
    run.add_argument(
        "--bus-option",
        action="append",
        type=_option,
        default=[],
        metavar="KEY=VALUE",
        help="extra can.Bus argument, e.g. port=43114 (repeatable)",
    )
    run.add_argument(
        "--no-loopback",
        action="store_true",
        help="let an IPv4 udp_multicast bus use the LAN instead of 127.0.0.1",
    )
    run.add_argument(
        "--no-ecus", action="store_true", help="run only the adapter (ECUs elsewhere on the bus)"
    )
    run.add_argument(
        "--no-adapter",
        action="store_true",
        help="run only the ECUs (a real adapter on the bus, e.g. socketcan on a bench)",
    )
    run.add_argument("--no-pty", action="store_true", help="do not open a pty")
    run.add_argument(
        "--tcp-port",
        type=int,
        default=35000,
        help="adapter TCP port on 127.0.0.1 (0: any free port, -1: none; default 35000)",
    )
    run.add_argument(
        "--link-dir", type=Path, help="directory for the stable pty symlink 'obd' (default: a temp dir)"
    )
    run.add_argument(
        "--baud", type=int, default=38400, help="UART speed the adapter output is paced at (0: unpaced)"
    )
    run.add_argument("--reset-delay", type=float, default=0.5, help="seconds ATZ takes (default 0.5)")
    run.add_argument("--no-mcu", action="store_true", help="run no power MCU simulator")
    run.add_argument(
        "--mcu-tcp-port", type=int, default=0,
        help="power MCU TCP port on 127.0.0.1 (0: any free port, -1: none; its pty is 'mcu')",
    )
    run.add_argument(
        "--stn", action="store_true", help="answer as an STN1110 (ST commands) rather than an ELM327 v1.5"
    )
    run.add_argument(
        "--control",
        default="127.0.0.1:0",
        help="control socket HOST:PORT (default: a free port on 127.0.0.1)",
    )
    run.add_argument("--info-file", type=Path, help="also write where to connect as JSON to this file")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _client_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--control",
        default=os.environ.get("HIL_CONTROL"),
        help="HOST:PORT of a running car (default: $HIL_CONTROL)",
    )
    fault = sub.add_parser(
        "fault",
        parents=[common],
        help="switch a fault on or off",
        epilog=FAULTS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fault.add_argument("name", choices=[str(k) for k in FAULT_HELP])
    fault.add_argument("state", choices=["on", "off"])
    fault.add_argument(
        "params", nargs="*", metavar="KEY=VALUE", help="ecu=engine, delay=0.5, nrc=22, service=01, count=16"
    )
    scenario = sub.add_parser("scenario", parents=[common], help="switch the running car's scenario")
    scenario.add_argument("name", help="scenario name or YAML path (as seen by the simulator)")
    power = sub.add_parser(
        "power",
        parents=[common],
        help="pin battery voltage or ignition: voltage V | ignition on|off | release",
    )
    power.add_argument("args", nargs="+")
    mcu = sub.add_parser("mcu", parents=[common], help="power MCU state, or: mcu wake [REASON]")
    mcu.add_argument("args", nargs="*")
    sub.add_parser("status", parents=[common], help="show the running car's state")
    sub.add_parser("list", help="list bundled vehicles and scenarios")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hil", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _run_parser(sub)
    _client_parsers(sub)
    return parser


def _configure_logging(level: str) -> None:
    numeric = getattr(logging, level.upper())
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


def _car_config(args: argparse.Namespace) -> CarConfig:
    return CarConfig(
        vehicle=args.vehicle,
        scenario=args.scenario,
        bus=BusConfig(args.interface, args.channel, tuple(args.bus_option), loopback=not args.no_loopback),
        ecus=not args.no_ecus,
        adapter=not args.no_adapter,
        pty=not args.no_pty,
        tcp_port=None if args.tcp_port < 0 else args.tcp_port,
        baud=args.baud,
        reset_delay=args.reset_delay,
        stn=args.stn,
        link_dir=args.link_dir,
        mcu=not args.no_mcu,
        mcu_tcp_port=None if args.mcu_tcp_port < 0 else args.mcu_tcp_port,
    )


def run(args: argparse.Namespace) -> int:
    _configure_logging(args.log_level)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    host, _, port = args.control.rpartition(":")
    car = SimulatedCar(_car_config(args))
    control = None
    try:
        car.start()
        control = ControlServer(car, host or "127.0.0.1", int(port)).start()
        info = {**car.status(), "control": control.address}
        for key in ("vehicle", "scenario", "bus", "pty", "pty_device", "tcp_port", "mcu_pty",
                    "mcu_tcp_port", "control"):
            if key in info:
                print(f"{key}: {info[key]}")
        print("ready: send SIGINT or SIGTERM to stop", flush=True)
        if args.info_file:
            args.info_file.write_text(json.dumps(info), encoding="utf-8")
        while not stop.wait(0.5):
            pass
    finally:
        if control is not None:
            control.stop()
        car.stop()
    print("stopped", flush=True)
    return 0


def client(args: argparse.Namespace) -> int:
    if not args.control:
        print("hil: no running car given: pass --control HOST:PORT or set HIL_CONTROL", file=sys.stderr)
        return 2
    if args.command == "fault":
        line = " ".join(["fault", args.name, args.state, *args.params])
    elif args.command == "scenario":
        line = f"scenario {args.name}"
    elif args.command in ("power", "mcu"):
        line = " ".join([args.command, *args.args])
    else:
        line = "status"
    reply = send_command(args.control, line)
    print(json.dumps(reply, indent=2))
    return 0 if reply.get("ok") else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return run(args)
        if args.command == "list":
            print("vehicles: " + ", ".join(available("vehicles")))
            print("scenarios: " + ", ".join(available("scenarios")))
            return 0
        return client(args)
    except (HilError, OSError) as err:
        print(f"hil: {err}", file=sys.stderr)
        return 1
