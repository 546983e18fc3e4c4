"""Jobs from the job cache and jobs still in flight, shaped like Salt's jobs runner."""

from __future__ import annotations

import time
from typing import Any

from cloud_master.jobcache import Job
from cloud_master.runners import JobNotFound, RunnerContext

__all__ = ["active", "list_", "lookup_jid"]


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))


def _describe(job: Job) -> dict[str, Any]:
    return {"Function": job.fun, "Arguments": job.arg, "Target": job.tgt,
            "Target-type": job.tgt_type, "User": job.user, "StartTime": _when(job.started),
            "Minions": job.minions}


def list_(ctx: RunnerContext, limit: int = 50) -> dict[str, dict[str, Any]]:
    """The newest ``limit`` jobs in the job cache, by jid.

    CLI: ``cloud-master runner jobs.list limit=10``
    """
    return {job.jid: _describe(job) for job in ctx.jobcache.list_jobs(limit=int(limit))}


def lookup_jid(ctx: RunnerContext, jid: str) -> dict[str, Any]:
    """The returns of job ``jid``, by minion id (minions that have not answered are absent).

    Raises JobNotFound when the job cache holds no such job.
    CLI: ``cloud-master runner jobs.lookup_jid 20261127113000123456``
    """
    record = ctx.jobcache.get_job(str(jid))
    if record is None:
        raise JobNotFound(f"no job {jid} in the job cache (see `cloud-master runner jobs.list`)")
    return {minion_id: ret.ret for minion_id, ret in record.returns.items()}


def active(ctx: RunnerContext) -> dict[str, dict[str, Any]]:
    """Jobs still waiting for some of their minions, with who has and has not returned.

    CLI: ``cloud-master runner jobs.active``
    """
    out: dict[str, dict[str, Any]] = {}
    for job in ctx.tracker.active():
        pub = job.publish
        out[pub.jid] = {"Function": pub.fun, "Arguments": pub.arg, "Target": pub.tgt,
                        "Target-type": pub.tgt_type, "User": pub.user,
                        "StartTime": _when(job.started), "Returned": sorted(job.returned),
                        "Running": sorted(job.expected - job.returned)}
    return out
