"""State module ``agent``: change this agent's own configuration, and restart it safely.

Settings go to the drop-in ``agent.d/50-states.yaml`` beside the config file, never into the
file itself (see ``autopi_agent.selfconfig``): checked against the agent's config schema
first (a bad value fails the state, naming the key, and changes nothing), written
atomically with the last confirmed version kept. When the settings the agent runs on
changed, it restarts after the state run's return has been delivered; if it then cannot
authenticate with the master within ``config_trial_window`` seconds, it puts the previous
settings back and restarts again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from autopi_agent.selfconfig import SelfConfig
from autopi_agent.state.context import StateContext, state_return
from autopi_common.config import ConfigError

__all__ = ["config"]

log = structlog.get_logger(__name__)


def config(ctx: StateContext, name: str, settings: Mapping[str, Any] | None = None,
           remove: Sequence[str] | None = None, restart: bool = True) -> dict[str, Any]:
    """Merge ``settings`` (a mapping of agent config keys; sections merge key by key) into
    the states' drop-in, and drop the keys ``remove`` from it; restart the agent when the
    settings it runs on changed (``restart: False`` leaves that to the next start).

    SLS example::

        faster heartbeat:
          agent.config:
            - settings:
                heartbeat_interval: 10
                grains: {fleet: taxis}
    """
    return apply_settings(ctx, name, dict(settings or {}), list(remove or []), restart)


def apply_settings(ctx: StateContext, name: str, settings: dict[str, Any], remove: list[str],
                   restart: bool = True) -> dict[str, Any]:
    """The body of ``agent.config`` (``power.settings`` uses it too)."""
    selfconfig = SelfConfig.from_opts(ctx.agent.opts)
    if selfconfig is None:
        return state_return(name, False, "This agent was started without a config file "
                            "(-c PATH), so it has no agent.d drop-ins to manage")
    if not isinstance(settings, dict) or not all(isinstance(key, str) for key in settings):
        return state_return(name, False, "settings must be a mapping of agent config keys "
                            f"to values, got {settings!r:.80}")
    try:
        current = selfconfig.current()
        new = selfconfig.planned(current, settings, remove)
        if new == current:
            return state_return(name, True, "The agent's configuration is already as specified")
        before = selfconfig.effective()
        after = selfconfig.effective(new)
    except ConfigError as err:
        return state_return(name, False, f"The new settings were refused, nothing changed: {err}")
    changes = _changes(before, after)
    if ctx.test:
        return state_return(name, None, "The agent's configuration would be changed"
                            + ("" if changes else " (no setting in force changes)"), changes)
    try:
        selfconfig.write(new)
    except OSError as err:
        return state_return(name, False, f"Cannot write {selfconfig.dropin}: {err}")
    return state_return(name, True, _restart(ctx, selfconfig, changes, restart), changes)


def _restart(ctx: StateContext, selfconfig: SelfConfig, changes: Mapping[str, Any],
             restart: bool) -> str:
    written = f"Wrote {selfconfig.dropin}"
    if not changes:
        selfconfig.confirm()  # nothing in force changed: there is nothing to try out
        return f"{written}; no setting in force changed (a later drop-in overrides it)"
    request = ctx.agent.services.get("restart")
    if not restart or request is None:
        return (f"{written}; the agent uses it from its next start (restart it: systemctl "
                "restart autopi-agent), on trial until it reaches the master")
    request(f"agent.config changed {', '.join(sorted(changes))}")
    window = ctx.agent.opts.get("config_trial_window", 120)
    return (f"{written}; the agent restarts when this run has returned, and goes back to "
            f"the previous settings if it cannot reach the master within {window:g} s")


def _changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    keys = sorted(set(before) | set(after))
    return {key: {"old": before.get(key), "new": after.get(key)} for key in keys
            if before.get(key) != after.get(key)}
