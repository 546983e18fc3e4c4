"""Execution module ``schedule``: list and change the agent's scheduled jobs at run time.

Jobs come from the agent config (``schedule:``), the pillar (``schedule:``) and run-time
changes made here, which are saved under the cachedir and outlive restarts (see
``autopi_agent.minion.schedule_book``). Answers have Salt's shape: ``{"result",
"comment", "changes"}``; a refused change has ``result: false`` and fails the job.

Without a running agent (``autopi-agent call``), changes are saved and take effect at the
next start; ``schedule.run_job`` then fails.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import Any

import yaml

from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.schedule import Scheduler
from autopi_agent.minion.schedule_book import ScheduleBook
from autopi_agent.minion.schedule_spec import ScheduleError

__all__ = ["add", "delete", "disable", "disable_job", "enable", "enable_job", "list_", "modify",
           "run_job", "show_next_fire_time"]

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


def _scheduler(ctx: AgentContext) -> Scheduler | None:
    scheduler = ctx.services.get("schedule")
    return scheduler if isinstance(scheduler, Scheduler) else None


async def _book(ctx: AgentContext) -> ScheduleBook:
    scheduler = _scheduler(ctx)
    if scheduler is not None:
        return scheduler.book
    pillar = ctx.services.get("pillar")
    if not isinstance(pillar, Mapping):
        from autopi_agent.state.sources import cached_pillar

        pillar = await asyncio.to_thread(cached_pillar, ctx)
    return await asyncio.to_thread(ScheduleBook.from_opts, ctx.opts, pillar)


async def _saved(ctx: AgentContext, book: ScheduleBook) -> None:
    await asyncio.to_thread(book.write, *book.snapshot())
    scheduler = _scheduler(ctx)
    if scheduler is not None:
        scheduler.notify()


def _answer(result: bool, comment: str, changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"result": result, "comment": comment, "changes": dict(changes or {})}


def _definition(options: Mapping[str, Any]) -> dict[str, Any]:
    # Salt's schedule.add calls them job_args/job_kwargs ("args" is the CLI's own).
    definition = dict(options)
    for wire, key in (("job_args", "args"), ("job_kwargs", "kwargs")):
        if wire in definition:
            definition[key] = definition.pop(wire)
    return definition


async def list_(ctx: AgentContext, show_all: bool = False, show_disabled: bool = True,
                where: str | None = None, return_yaml: bool = True) -> Any:
    """List the scheduled jobs, as Salt's ``schedule.list``.

    show_all
        Also jobs whose name starts with ``__``.
    show_disabled
        False hides disabled jobs.
    where
        ``opts`` (config and run-time jobs) or ``pillar``; all when not given.
    return_yaml
        True (the default, as Salt) returns YAML text ``schedule: {...}`` in which each job
        says whether it was ``saved`` at run time; False returns the mapping.

    CLI Example::

        cloud-master run car-0001 schedule.list
        cloud-master run car-0001 schedule.list return_yaml=False
    """
    book = await _book(ctx)
    jobs: dict[str, Any] = book.listing(show_all=show_all, show_disabled=show_disabled,
                                        where=where)
    if not book.enabled:
        jobs = {"enabled": False, **jobs}
    if not return_yaml:
        return jobs
    for name, job in jobs.items():
        if isinstance(job, dict):
            job["saved"] = book.is_saved(name)
    return yaml.safe_dump({"schedule": jobs}, default_flow_style=False)


async def add(ctx: AgentContext, name: str, **options: Any) -> dict[str, Any]:
    """Add job ``name`` to the schedule, saved across restarts.

    Options are the keys of a schedule entry: ``function`` (required), ``seconds``,
    ``minutes``, ``hours``, ``days`` or ``cron`` (required, not both kinds), ``job_args``
    (a list), ``job_kwargs`` (a mapping), ``splay``, ``enabled``, ``returner``,
    ``return_job``, ``run_on_start``, ``maxrunning``, ``jid_include``, ``metadata``. An
    interval job runs once right away unless ``run_on_start=False``.

    CLI Example::

        cloud-master run car-0001 schedule.add ping function=test.ping minutes=5
        cloud-master run car-0001 schedule.add fuel function=obd.query \\
            job_args='[FUEL_LEVEL]' cron='*/10 * * * *'
    """
    book = await _book(ctx)
    try:
        book.add(name, _definition(options))
    except ScheduleError as err:
        return _answer(False, str(err))
    await _saved(ctx, book)
    return _answer(True, f"Added job: {name} to schedule.", {name: "added"})


async def modify(ctx: AgentContext, name: str, **options: Any) -> dict[str, Any]:
    """Change some settings of job ``name`` (the others stay; giving a timing key replaces
    the old timing). Options as for schedule.add. A job from the pillar is changed in the
    pillar.

    CLI Example::

        cloud-master run car-0001 schedule.modify ping minutes=10
    """
    book = await _book(ctx)
    try:
        old, new = book.modify(name, _definition(options))
    except ScheduleError as err:
        return _answer(False, str(err))
    if old == new:
        return _answer(True, f"Job {name} in correct state")
    await _saved(ctx, book)
    return _answer(True, f"Modified job: {name} in schedule.", {name: {"old": old, "new": new}})


async def delete(ctx: AgentContext, name: str) -> dict[str, Any]:
    """Delete job ``name`` (a config job stays deleted until added again).

    CLI Example::

        cloud-master run car-0001 schedule.delete ping
    """
    book = await _book(ctx)
    try:
        book.delete(name)
    except ScheduleError as err:
        return _answer(False, str(err))
    await _saved(ctx, book)
    return _answer(True, f"Deleted Job {name} from schedule.", {name: "removed"})


async def _set_job(ctx: AgentContext, name: str, enabled: bool) -> dict[str, Any]:
    book = await _book(ctx)
    try:
        book.set_job_enabled(name, enabled)
    except ScheduleError as err:
        return _answer(False, str(err))
    await _saved(ctx, book)
    word = "Enabled" if enabled else "Disabled"
    return _answer(True, f"{word} Job {name} in schedule.", {name: word.lower()})


async def enable_job(ctx: AgentContext, name: str) -> dict[str, Any]:
    """Let job ``name`` run again.

    CLI Example::

        cloud-master run car-0001 schedule.enable_job ping
    """
    return await _set_job(ctx, name, True)


async def disable_job(ctx: AgentContext, name: str) -> dict[str, Any]:
    """Keep job ``name`` but stop running it.

    CLI Example::

        cloud-master run car-0001 schedule.disable_job ping
    """
    return await _set_job(ctx, name, False)


async def _set_all(ctx: AgentContext, enabled: bool) -> dict[str, Any]:
    book = await _book(ctx)
    book.set_enabled(enabled)
    await _saved(ctx, book)
    word = "Enabled" if enabled else "Disabled"
    return _answer(True, f"{word} schedule on minion.", {"schedule": word.lower()})


async def enable(ctx: AgentContext) -> dict[str, Any]:
    """Run scheduled jobs again (after schedule.disable).

    CLI Example::

        cloud-master run car-0001 schedule.enable
    """
    return await _set_all(ctx, True)


async def disable(ctx: AgentContext) -> dict[str, Any]:
    """Stop running every scheduled job (they are kept).

    CLI Example::

        cloud-master run car-0001 schedule.disable
    """
    return await _set_all(ctx, False)


async def run_job(ctx: AgentContext, name: str, force: bool = False) -> dict[str, Any]:
    """Run job ``name`` now, in the background; its return goes where its runs go.
    ``force=True`` runs a disabled job. Refused while ``maxrunning`` runs are going.

    CLI Example::

        cloud-master run car-0001 schedule.run_job ping
    """
    scheduler = _scheduler(ctx)
    if scheduler is None:
        return _answer(False, "The agent is not running: no scheduler to run the job.")
    try:
        scheduler.run_now(name, force=force)
    except ScheduleError as err:
        return _answer(False, str(err))
    return _answer(True, f"Scheduling Job {name} on minion.")


async def show_next_fire_time(ctx: AgentContext, name: str) -> dict[str, Any]:
    """When job ``name`` runs next, as local time ``YYYY-mm-ddTHH:MM:SS`` (with splay).

    CLI Example::

        cloud-master run car-0001 schedule.show_next_fire_time ping
    """
    scheduler = _scheduler(ctx)
    when = scheduler.next_fire_time(name) if scheduler is not None else None
    if when is None:
        return {"result": True, "comment": "next fire time not available."}
    return {"result": True,
            "next_fire_time": dt.datetime.fromtimestamp(when).strftime(_TIME_FORMAT)}
