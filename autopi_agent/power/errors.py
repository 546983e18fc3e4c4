"""Errors of the power package.

PowerError
 ├── PowerConfigError (ValueError)      the ``power:`` config section is malformed
 ├── McuProtocolError (ValueError)      a line from the MCU is not a valid frame or reply
 ├── McuError (OSError)                 the power MCU cannot be reached or refused a request
 │    ├── McuTimeout (TimeoutError)     no valid reply within the request's time limit
 │    └── McuRefused                    the MCU answered ERR
 └── PowerStateError (RuntimeError)     a request that the current power state forbids
"""

from __future__ import annotations

__all__ = ["McuError", "McuProtocolError", "McuRefused", "McuTimeout", "PowerConfigError",
           "PowerError", "PowerStateError"]


class PowerError(Exception):
    """Root of the power package's errors."""


class PowerConfigError(PowerError, ValueError):
    """The ``power:`` config section is malformed."""


class McuProtocolError(PowerError, ValueError):
    """A line from the power MCU is not a valid frame, or a reply lacks a field."""


class McuError(PowerError, OSError):
    """The power MCU cannot be reached, or it refused a request."""


class McuTimeout(McuError, TimeoutError):
    """The power MCU gave no valid reply within the request's time limit."""


class McuRefused(McuError):
    """The power MCU answered ERR (an unknown request or a bad argument)."""


class PowerStateError(PowerError, RuntimeError):
    """The request is not possible in the current power state (e.g. already going to sleep)."""
