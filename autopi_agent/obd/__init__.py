"""OBD-II through an ELM327/STN adapter, on python-OBD 0.7.3: one owner per adapter, guarded.

Layout: ``settings`` (the ``obd:`` config section), ``errors`` (the typed errors),
``replies``/``frames``/``values`` (pure: adapter lines, frame checks, VIN, plain values),
``link`` (bounded serial I/O), ``session`` (python-OBD handshake + checked requests),
``car``/``monitor`` (what can be asked), ``owner`` (the thread that serialises it all).

The daemon creates one ``ObdOwner`` per adapter, registers it as ``ctx.services["obd"]``
and closes it at shutdown; ``car_grains(owner)`` gives the grains read from the car.

Importing this package (or ``settings``/``errors``) does not import python-OBD, which costs
about 0.2 s and 20 MiB; ``ObdOwner`` and ``car_grains`` load it when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autopi_agent.obd.errors import (
    ObdAdapterGone,
    ObdBadResponse,
    ObdBusError,
    ObdConfigError,
    ObdError,
    ObdNegativeResponse,
    ObdNoData,
    ObdTimeout,
    ObdUnableToConnect,
    ObdUnsupported,
)
from autopi_agent.obd.settings import OBD_SCHEMA, ObdSettings

if TYPE_CHECKING:
    from autopi_agent.obd.owner import ObdOwner, OwnerState

__all__ = [
    "OBD_SCHEMA",
    "ObdAdapterGone",
    "ObdBadResponse",
    "ObdBusError",
    "ObdConfigError",
    "ObdError",
    "ObdNegativeResponse",
    "ObdNoData",
    "ObdOwner",
    "ObdSettings",
    "ObdTimeout",
    "ObdUnableToConnect",
    "ObdUnsupported",
    "OwnerState",
    "car_grains",
]


def __getattr__(name: str) -> Any:
    if name in ("ObdOwner", "OwnerState"):
        from autopi_agent.obd import owner

        return getattr(owner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def car_grains(owner: ObdOwner) -> dict[str, Any]:
    """``{"obd": {"vin", "protocol", "protocol_name", "supported_pids"}}`` from the last
    connection to the car, or {} before the car first answered. No I/O."""
    return owner.grains()
