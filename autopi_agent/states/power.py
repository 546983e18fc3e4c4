"""State module ``power``: the power manager's settings (sleep timer, voltages, wake triggers).

``power.settings`` sets keys of the agent config's ``power:`` section through
``agent.config`` (same drop-in, same checks, same restart with rollback): only the keys
given change, the rest of the section stays as the config file has it. Values are checked
by the config schema's ``power`` section, so a wrong threshold fails the state naming it.
"""

from __future__ import annotations

from typing import Any

from autopi_agent.state.context import StateContext, state_return
from autopi_agent.states.agent import apply_settings

__all__ = ["settings"]


def settings(ctx: StateContext, name: str, restart: bool = True, **power: Any) -> dict[str, Any]:
    """Set power manager settings: any keys of the ``power:`` config section, such as
    ``sleep_after`` (s), ``low_voltage`` / ``critical_voltage`` (V), ``wake_triggers``.

    SLS example::

        sleep sooner:
          power.settings:
            - sleep_after: 900
            - low_voltage: 12.1
            - wake_triggers: [ignition, voltage_rise]
    """
    if not _power_known():
        return state_return(name, False, "This agent version has no 'power' config section "
                            "(no power manager), so power settings cannot be applied")
    if not power:
        return state_return(name, False, "No power settings given (e.g. - sleep_after: 900)")
    return apply_settings(ctx, name, {"power": power}, [], restart)


def _power_known() -> bool:
    from autopi_agent.config import AGENT_SCHEMA

    return any(field.name == "power" for field in AGENT_SCHEMA)
