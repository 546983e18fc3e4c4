"""Execution module ``grains``: read the agent's grains (OS, CPU, network, board facts)."""

from __future__ import annotations

from typing import Any

from autopi_agent.minion.context import AgentContext
from autopi_proto.targeting import DEFAULT_DELIMITER, traverse

__all__ = ["get", "has_value", "item", "items", "ls"]


def items(ctx: AgentContext) -> dict[str, Any]:
    """Return all grains as a dict.

    CLI Example::

        cloud-master run car-0001 grains.items
    """
    return dict(ctx.grains)


def get(ctx: AgentContext, key: str, default: Any = "",
        delimiter: str = DEFAULT_DELIMITER) -> Any:
    """Return the grain ``key``, or ``default`` (an empty string) when it is missing.

    ``key`` reaches into nested values with ``delimiter`` (``:``): ``ip4_interfaces:eth0``
    is the list of eth0's addresses, ``ip4_interfaces:eth0:0`` its first one. Use another
    ``delimiter`` when a key itself contains a colon.

    CLI Example::

        cloud-master run car-0001 grains.get os
        cloud-master run car-0001 grains.get ip4_interfaces:wlan0:0
        cloud-master run car-0001 grains.get 'a::b|c' delimiter='|'
    """
    return traverse(ctx.grains, str(key), default, delimiter)


def item(ctx: AgentContext, *keys: str, default: Any = "",
         delimiter: str = DEFAULT_DELIMITER) -> dict[str, Any]:
    """Return ``{key: value}`` for each of ``keys`` (nested keys as in grains.get).

    CLI Example::

        cloud-master run car-0001 grains.item os osrelease oscodename
    """
    return {key: traverse(ctx.grains, str(key), default, delimiter) for key in keys}


def has_value(ctx: AgentContext, key: str, delimiter: str = DEFAULT_DELIMITER) -> bool:
    """Return True when the grain ``key`` (nested keys as in grains.get) exists.

    CLI Example::

        cloud-master run car-0001 grains.has_value rpi_model
    """
    missing = object()
    return traverse(ctx.grains, str(key), missing, delimiter) is not missing


def ls(ctx: AgentContext) -> list[str]:
    """Return the sorted names of all grains.

    CLI Example::

        cloud-master run car-0001 grains.ls
    """
    return sorted(ctx.grains)
