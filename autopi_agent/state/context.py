"""What a state function is given (``StateContext``) and the shape of what it returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autopi_agent.minion.context import AgentContext, WithRetcode

if TYPE_CHECKING:
    from autopi_agent.fileclient import FileClient
    from autopi_common.sls.jinja import SaltFunctions

__all__ = ["INTERNAL_KEYWORDS", "StateContext", "state_return"]

# Keys of a low chunk that belong to the state engine, never to the state function.
INTERNAL_KEYWORDS = frozenset({
    "onfail", "onfail_any", "onfail_all", "require", "require_any", "onchanges",
    "onchanges_any", "watch", "watch_any", "prereq", "prerequired", "listen", "onfail_stop",
    "onchanges_in", "onfail_in", "prereq_in", "watch_in", "require_in", "listen_in",
    "fun", "state", "check_cmd", "cmd_opts_exclude", "failhard", "onlyif", "unless",
    "creates", "retry", "order", "parallel", "reload_modules", "reload_grains",
    "reload_pillar", "runas", "runas_password", "no_log", "fire_event", "saltenv", "umask",
    "use", "use_in", "__env__", "__sls__", "__id__", "__sls_included_from__",
    "__orchestration_jid__", "__prereq__", "__prerequiring__", "__umask__", "name_order",
    "__reqs__", "sfun", "__pub_user", "__pub_arg", "__pub_jid", "__pub_fun", "__pub_tgt",
    "__pub_ret", "__pub_pid", "__pub_tgt_type",
})


@dataclass(frozen=True, slots=True)
class StateContext:
    """One state call's world: the agent, dry-run flag, environment, files and pillar.

    ``low`` is the chunk being run; ``functions`` is the ``salt`` object for templates.
    """

    agent: AgentContext
    test: bool
    saltenv: str
    fileclient: FileClient
    pillar: Mapping[str, Any] = field(default_factory=dict)
    low: Mapping[str, Any] = field(default_factory=dict)
    functions: SaltFunctions | None = None

    @property
    def grains(self) -> Mapping[str, Any]:
        """The agent's grains."""
        return self.agent.grains

    def call(self, fun: str, *args: Any, **kwargs: Any) -> Any:
        """Run an execution function and return its value (a retcode wrapper unwrapped)."""
        value = self.agent.call(fun, *args, **kwargs)
        return value.ret if isinstance(value, WithRetcode) else value


def state_return(name: str, result: bool | None = True, comment: str = "",
                 changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A state function's return in Salt's shape: name, changes, result, comment."""
    return {"name": name, "changes": dict(changes or {}), "result": result, "comment": comment}
