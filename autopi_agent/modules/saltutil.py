"""Execution module ``saltutil``: the job bookkeeping Salt's master and CLI rely on."""

from __future__ import annotations

from typing import Any

from autopi_agent.minion.context import AgentContext

__all__ = ["find_job", "refresh_pillar", "running"]


def _jobs(ctx: AgentContext) -> dict[str, dict[str, Any]]:
    jobs = ctx.services.get("jobs")
    return jobs if isinstance(jobs, dict) else {}


def running(ctx: AgentContext) -> list[dict[str, Any]]:
    """The jobs running on this agent now: jid, fun, arg, target and start time of each.

    CLI Example::

        cloud-master run car-0001 saltutil.running
    """
    return [dict(job) for job in _jobs(ctx).values()]


def find_job(ctx: AgentContext, jid: str) -> dict[str, Any]:
    """The running job ``jid``, or ``{}`` when no such job runs here.

    A Salt master asks this of minions that have not answered yet, to know whether to
    keep waiting.

    CLI Example::

        cloud-master run car-0001 saltutil.find_job 20261127113000123456
    """
    job = _jobs(ctx).get(str(jid))
    return dict(job) if job else {}


def refresh_pillar(ctx: AgentContext, wait: bool = True, timeout: float = 30) -> bool:
    """Fetch this agent's pillar now and keep it for offline use; False if the master
    could not be reached (the last pillar stays in use).

    CLI Example::

        cloud-master run car-0001 saltutil.refresh_pillar
    """
    from autopi_agent.state.sources import refresh_pillar as fetch

    return fetch(ctx)
