"""Execution module ``pillar``: this agent's pillar (data the master gives this agent alone).

The pillar is fetched from the master (or compiled from local ``pillar_roots`` when
masterless) and kept on disk, so these functions answer offline with the last pillar
received.
"""

from __future__ import annotations

from typing import Any

from autopi_agent.minion.context import AgentContext
from autopi_agent.state.sources import pillar_for
from autopi_proto.grainmatch import DEFAULT_DELIMITER, traverse

__all__ = ["get", "item", "items", "raw"]


MASK = "**********"


def items(ctx: AgentContext, pillarenv: str | None = None,
          unmask: bool | None = None) -> dict[str, Any]:
    """The whole pillar, freshly fetched (the cached copy when the master is unreachable).

    As in Salt 3008, values are masked (``**********``, keys kept) unless ``unmask=True``
    or the agent config sets ``pillar_mask_output: false``: pillar often holds secrets and
    this output ends up in job caches and terminals.

    CLI Example::

        cloud-master run car-0001 pillar.items
        cloud-master run car-0001 pillar.items unmask=True
    """
    pillar = pillar_for(ctx, refresh=True, pillarenv=pillarenv)
    if unmask is None:
        unmask = not ctx.opts.get("pillar_mask_output", True)
    return pillar if unmask else _masked(pillar)


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(item) for item in value]
    return MASK


def raw(ctx: AgentContext, key: str | None = None) -> Any:
    """The pillar this agent holds now, without fetching; ``key`` picks one top-level key.

    CLI Example::

        cloud-master run car-0001 pillar.raw
    """
    pillar = pillar_for(ctx)
    return pillar if key is None else pillar.get(key, {})


def get(ctx: AgentContext, key: str, default: Any = "",
        delimiter: str = DEFAULT_DELIMITER) -> Any:
    """The pillar value at ``key``; nested keys are joined with ``:`` (``obd:baudrate``).

    CLI Example::

        cloud-master run car-0001 pillar.get obd:baudrate 38400
    """
    return traverse(pillar_for(ctx), key, default, delimiter)


def item(ctx: AgentContext, *keys: str, default: Any = "",
         delimiter: str = DEFAULT_DELIMITER) -> dict[str, Any]:
    """Several pillar values at once, as ``{key: value}``.

    CLI Example::

        cloud-master run car-0001 pillar.item obd:baudrate vehicle:vin
    """
    pillar = pillar_for(ctx)
    return {key: traverse(pillar, key, default, delimiter) for key in keys}
