"""Exceptions raised by the HIL simulator.

HilError
├── ConfigError(HilError, ValueError)        a vehicle profile, scenario or option is invalid
│   ├── ScenarioError                        a scenario file is invalid
│   └── VehicleError                         a vehicle profile is invalid
├── FaultError(HilError, ValueError)         an unknown fault or a bad fault parameter
├── BusError(HilError, OSError)              the CAN bus could not be opened or used
└── ControlError(HilError, ConnectionError)  the control socket is unreachable or refused a command
"""

from __future__ import annotations


class HilError(Exception):
    """Root of every error raised by the hil package."""


class ConfigError(HilError, ValueError):
    """A vehicle profile, scenario or option is invalid."""


class ScenarioError(ConfigError):
    """A scenario file is invalid."""


class VehicleError(ConfigError):
    """A vehicle profile is invalid."""


class FaultError(HilError, ValueError):
    """An unknown fault, or a fault parameter that does not parse."""


class BusError(HilError, OSError):
    """The CAN bus could not be opened or used."""


class ControlError(HilError, ConnectionError):
    """The control socket could not be reached, or it refused a command."""
