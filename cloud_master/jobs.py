"""Jobs in flight on the master: who was targeted, who answered, who is waiting for answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from autopi_proto import targeting
from autopi_proto.messages import JobReturn, Publish


@dataclass(slots=True)
class ActiveJob:
    """A published job and what came back so far."""

    publish: Publish
    expected: frozenset[str]
    started: float = field(default_factory=time.time)
    returned: set[str] = field(default_factory=set)
    waiters: list[asyncio.Queue[JobReturn | None]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.expected <= self.returned


class JobTracker:
    """Keeps jobs for ``keep_seconds`` so late returns can still be attributed and checked."""

    def __init__(self, keep_seconds: float = 3600.0) -> None:
        self._jobs: dict[str, ActiveJob] = {}
        self._keep = keep_seconds

    def add(self, publish: Publish, expected: frozenset[str]) -> ActiveJob:
        self.expire()
        job = ActiveJob(publish, expected)
        self._jobs[publish.jid] = job
        return job

    def get(self, jid: str) -> ActiveJob | None:
        return self._jobs.get(jid)

    def active(self) -> list[ActiveJob]:
        return [job for job in self._jobs.values() if not job.complete]

    def targeted(self, jid: str, minion_id: str, grains_for: Callable[[str], Mapping[str, Any]]) -> bool:
        """Whether ``minion_id`` was targeted by ``jid`` (a return from anyone else is dropped)."""
        job = self._jobs.get(jid)
        if job is None:
            return False
        if minion_id in job.expected:
            return True
        pub = job.publish
        return targeting.matches(pub.tgt, pub.tgt_type, minion_id, grains_for(minion_id))

    def record(self, ret: JobReturn) -> bool:
        """Note a return; False when it is a duplicate. Wakes the job's waiters."""
        job = self._jobs.get(ret.jid)
        if job is None or ret.minion_id in job.returned:
            return False
        job.returned.add(ret.minion_id)
        for queue in job.waiters:
            queue.put_nowait(ret)
            if job.complete:
                queue.put_nowait(None)
        return True

    def wait(self, jid: str) -> asyncio.Queue[JobReturn | None]:
        """A queue of the job's returns, closed by ``None`` when every expected minion answered."""
        queue: asyncio.Queue[JobReturn | None] = asyncio.Queue()
        job = self._jobs.get(jid)
        if job is not None:
            job.waiters.append(queue)
            if job.complete:
                queue.put_nowait(None)
        return queue

    def unwait(self, jid: str, queue: asyncio.Queue[JobReturn | None]) -> None:
        job = self._jobs.get(jid)
        if job is not None and queue in job.waiters:
            job.waiters.remove(queue)

    def expire(self) -> None:
        cutoff = time.time() - self._keep
        for jid in [jid for jid, job in self._jobs.items() if job.started < cutoff]:
            del self._jobs[jid]
