"""HIL simulator: SAE J1979 ECUs on python-can, an ELM327 adapter on a pty/TCP port, scenarios, faults.

Start a car in-process::

    from hil import CarConfig, ManualClock, SimulatedCar, parse_fault

    with SimulatedCar(CarConfig(scenario="city-drive"), clock=ManualClock()) as car:
        car.pty_path        # serial device for python-OBD / the agent
        car.tcp_url         # socket://127.0.0.1:PORT
        car.inject(parse_fault("silent-ecu", {"ecu": "engine"}))

See hil/README.md for scenarios, vehicle profiles, faults and the CLI.
"""

from hil.canbus import BusConfig, open_bus
from hil.canlink import CanLink
from hil.car import CarConfig, SimulatedCar
from hil.clock import Clock, ManualClock, SystemClock
from hil.control import ControlServer, execute, send_command
from hil.elm import AdapterIdentity, Elm327, ElmReply
from hil.errors import BusError, ConfigError, ControlError, FaultError, HilError, ScenarioError, VehicleError
from hil.faults import Fault, FaultKind, parse_fault
from hil.loader import available, load_scenario, load_vehicle
from hil.model import VehicleModel
from hil.power import PowerSim, PowerState
from hil.scenario import Scenario
from hil.vehicle import EcuProfile, VehicleProfile

__all__ = [
    "AdapterIdentity",
    "BusConfig",
    "BusError",
    "CanLink",
    "CarConfig",
    "Clock",
    "ConfigError",
    "ControlError",
    "ControlServer",
    "EcuProfile",
    "Elm327",
    "ElmReply",
    "Fault",
    "FaultError",
    "FaultKind",
    "HilError",
    "ManualClock",
    "PowerSim",
    "PowerState",
    "Scenario",
    "ScenarioError",
    "SimulatedCar",
    "SystemClock",
    "VehicleError",
    "VehicleModel",
    "VehicleProfile",
    "available",
    "execute",
    "load_scenario",
    "load_vehicle",
    "open_bus",
    "parse_fault",
    "send_command",
]
