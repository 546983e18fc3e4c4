"""Returner ``log``: each return as one structured log event (``job.return``) of the agent's log.

Settings (``returners: {log: {...}}``): ``level`` (debug, info, warning; info) and
``max_chars`` (1000): the return is shown as JSON cut to that length, so a large return
does not flood the journal. Mind what jobs return before sending them here: the log is
read by more people than the job cache.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import structlog

from autopi_agent.minion.context import AgentContext
from autopi_agent.returners import ReturnerConfigError, check_settings
from autopi_proto.messages import JobReturn

__all__ = ["LogReturner", "create"]

log = structlog.get_logger(__name__)

_LEVELS = ("debug", "info", "warning")


class LogReturner:
    """Logs returns with structlog."""

    def __init__(self, level: str = "info", max_chars: int = 1000) -> None:
        if level not in _LEVELS:
            raise ReturnerConfigError(f"returners.log.level: expected one of {', '.join(_LEVELS)}, "
                                      f"got {level!r}")
        self.level = level
        self.max_chars = max_chars

    async def send(self, ret: JobReturn) -> None:
        text = json.dumps(ret.ret, ensure_ascii=False, default=str)
        if len(text) > self.max_chars:
            text = text[: self.max_chars] + f"... ({len(text)} chars)"
        getattr(log, self.level)("job.return", minion=ret.minion_id, jid=ret.jid, fun=ret.fun,
                                 retcode=ret.retcode, success=ret.success, ret=text)

    async def aclose(self) -> None:
        return None


def create(ctx: AgentContext, settings: Mapping[str, Any]) -> LogReturner:
    """The log returner with the agent's settings."""
    check_settings("log", settings, ("level", "max_chars"))
    max_chars = settings.get("max_chars", 1000)
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise ReturnerConfigError(f"returners.log.max_chars: expected a whole number above 0, "
                                  f"got {max_chars!r}")
    return LogReturner(str(settings.get("level", "info")), max_chars)
