"""Run ordered low chunks: requisites, conditions, ``mod_watch``, ``test=True``, Salt's returns.

The return of a run maps ``state_|-id_|-name_|-fun`` to ``{name, result, changes, comment,
__sls__, __run_num__, start_time, duration, __id__}``. A failed state never stops an
independent one; only the states that require it are skipped ("One or more requisite
failed"), unless ``failhard`` is set.
"""

from __future__ import annotations

import datetime
import inspect
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from autopi_agent.minion.context import current_job
from autopi_agent.minion.errors import UnknownFunctionError
from autopi_agent.minion.loader import Function, Loader
from autopi_agent.state.compiler import compile_low, unsupported
from autopi_agent.state.conditions import CONDITION_KEYS, check_conditions
from autopi_agent.state.context import INTERNAL_KEYWORDS, StateContext
from autopi_agent.state.ordering import DependencyGraph, low_tag

__all__ = ["StateRunner"]

log = structlog.get_logger(__name__)

LowChunk = dict[str, Any]
Running = dict[str, dict[str, Any]]
_MAX_DEPTH = 20


class StateRunner:
    """Runs chunks with one state loader; ``make_context(low)`` builds each call's context."""

    def __init__(self, states: Loader, make_context: Callable[[Mapping[str, Any]], StateContext],
                 *, test: bool = False, failhard: bool = False) -> None:
        self.states = states
        self.make_context = make_context
        self.test = test
        self.failhard = failhard
        self.run_num = 0
        self.graph = DependencyGraph()

    def has_mod_watch(self, state: str) -> bool:
        """Whether state module ``state`` reacts to ``watch`` (else watch means require)."""
        try:
            self.states.function(f"{state}.mod_watch")
        except UnknownFunctionError:
            return False
        return True

    def call_high(self, high: dict[str, Any]) -> Running | list[str]:
        """Compile and run high data; a list of error sentences if it does not compile."""
        refused = unsupported(high)
        if refused:
            return refused
        chunks, errors, graph = compile_low(high, self.has_mod_watch)
        if errors or graph is None:
            return errors
        return self.call_chunks(chunks, graph)

    def call_chunks(self, chunks: list[LowChunk], graph: DependencyGraph) -> Running:
        """Run ordered chunks; every chunk gets a result, even when a requisite failed."""
        self.graph = graph
        running: Running = {}
        job = current_job()
        for low in chunks:
            job.check()  # a run past its time limit stops between states, never inside one
            if low_tag(low) not in running:
                self.call_chunk(low, running)
            if self._hard_failure(low, running):
                log.warning("state.failhard", id=low["__id__"])
                break
        return running

    def _hard_failure(self, low: Mapping[str, Any], running: Running) -> bool:
        if self.test or not low.get("failhard", self.failhard):
            return False
        ret = running.get(low_tag(low))
        return ret is not None and ret["result"] is False

    def call_chunk(self, low: LowChunk, running: Running, depth: int = 0) -> None:
        """Run one chunk after its requisites, or record why it did not run."""
        tag = low_tag(low)
        status, reqs = self.check_requisites(low, running)
        if status == "unmet":
            self._call_unmet(low, running, depth)
        elif status == "met":
            running[tag] = self.call(low)
        elif status == "change":
            ret = self.call(low)
            if not ret["changes"] and not ret.get("skip_watch", False):
                watch = {**low, "sfun": low["fun"], "fun": "mod_watch", "__reqs__": reqs}
                ret = self.call(watch)
            running[tag] = ret
        elif status == "skip_watch":
            ret = self.call(low)
            ret["comment"] += (" mod_watch was not run because requisites were skipped by "
                               "another state")
            running[tag] = ret
        elif status == "fail":
            failed = sorted({f"{chunk['__sls__']}.{chunk['__id__']}"
                             for chunks in reqs.values() for chunk in chunks
                             if running.get(low_tag(chunk), {}).get("result") is False})
            self._not_run(low, running, False, f"One or more requisite failed: {', '.join(failed)}")
        else:
            self._not_run(low, running, True, _NOT_RUN[status])

    def _call_unmet(self, low: LowChunk, running: Running, depth: int) -> None:
        for _, chunk in self.graph.dependencies(low):
            if low_tag(chunk) not in running:
                self.call_chunk(chunk, running)
                if self._hard_failure(chunk, running):
                    return
        if depth + 1 >= _MAX_DEPTH:
            self._not_run(low, running, False, "Recursive requisite found")
            return
        self.call_chunk(low, running, depth + 1)

    def _not_run(self, low: Mapping[str, Any], running: Running, result: bool, comment: str) -> None:
        start, duration = _now(), 0.0
        running[low_tag(low)] = {
            "changes": {}, "result": result, "duration": duration, "start_time": start,
            "comment": comment, "__state_ran__": False, "__run_num__": self._next_run_num(),
            "__sls__": low.get("__sls__"), "__id__": low.get("__id__"), "name": low.get("name")}

    def _next_run_num(self) -> int:
        self.run_num += 1
        return self.run_num - 1

    def check_requisites(self, low: Mapping[str, Any],
                         running: Running) -> tuple[str, dict[str, list[LowChunk]]]:
        """Salt's verdict on ``low``'s requisites: met, unmet, fail, change, onfail,
        onchanges, skip_req or skip_watch; and the required chunks by requisite kind."""
        reqs: dict[str, list[LowChunk]] = {}
        for kind, chunk in self.graph.dependencies(low):
            reqs.setdefault(kind, []).append(chunk)
        stats: set[str] = set()
        for kind, chunks in reqs.items():
            stats |= _kind_stats(kind, [running.get(low_tag(chunk)) for chunk in chunks])
        return _verdict(stats), reqs

    def call(self, low: Mapping[str, Any]) -> dict[str, Any]:
        """Call one state function (conditions first) and add Salt's bookkeeping keys."""
        started = datetime.datetime.now(tz=datetime.UTC)
        log.info("state.started", state=low.get("state"), fun=low.get("fun"), id=low.get("__id__"))
        ret = self._invoke(low)
        if isinstance(ret.get("comment"), (list, tuple)):
            ret["comment"] = "\n".join(str(item) for item in ret["comment"])
        finished = datetime.datetime.now(tz=datetime.UTC)
        ret["__sls__"] = low.get("__sls__")
        ret["__run_num__"] = self._next_run_num()
        ret["start_time"] = started.astimezone().time().isoformat()
        delta = finished - started
        ret["duration"] = (delta.seconds * 1000000 + delta.microseconds) / 1000.0
        ret["__id__"] = low.get("__id__")
        log.info("state.finished", id=low.get("__id__"), result=ret.get("result"),
                 changed=bool(ret.get("changes")))
        return ret

    def _invoke(self, low: Mapping[str, Any]) -> dict[str, Any]:
        name = low.get("name")
        errors, function = self._verify(low)
        if errors or function is None:
            return {"result": False, "name": name, "changes": {},
                    "comment": "".join(f"{error}\n" for error in errors)}
        ctx = self.make_context(low)
        if any(key in low for key in CONDITION_KEYS):
            check = check_conditions(ctx, low)
            if check["result"] or check.get("error"):
                skipped = {"name": name, "changes": {}, **check}
                skipped.pop("error", None)
                return skipped
        kwargs, warnings = _arguments(function, low)
        try:
            ret = function.callable(ctx, **kwargs) if function.wants_ctx else \
                function.callable(**kwargs)
        except Exception:  # a state module bug must not stop the run
            return {"result": False, "name": name, "changes": {},
                    "comment": f"An exception occurred in this state: {traceback.format_exc()}"}
        if not isinstance(ret, dict):
            return {"result": False, "name": name, "changes": {},
                    "comment": f"{function.name} returned {type(ret).__name__}, not a state return"}
        if warnings:
            ret.setdefault("warnings", []).extend(warnings)
        return ret

    def _verify(self, low: Mapping[str, Any]) -> tuple[list[str], Function | None]:
        missing = [f'Missing "{key}" data' for key in ("state", "fun", "name") if key not in low]
        if missing:
            return missing, None
        if low["name"] and not isinstance(low["name"], str):
            where = f"in SLS '{low['__sls__']}' " if "__sls__" in low else ""
            return [f"ID '{low['name']}' {where}is not formed as a string, but is a "
                    f"{type(low['name']).__name__}"], None
        full = f"{low['state']}.{low['fun']}"
        try:
            function = self.states.function(full)
        except UnknownFunctionError as err:
            where = f"State '{full}' was not found in SLS '{low['__sls__']}'" \
                if "__sls__" in low else f"Specified state '{full}' was not found"
            return [where] + ([f"Reason: {err.reason}"] if err.reason else []), None
        required = [param.name for param in function.signature.parameters.values()
                    if param.default is inspect.Parameter.empty
                    and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)]
        return [f"Missing parameter {arg} for state {full}" for arg in required
                if arg not in low], function


_NOT_RUN = {
    "skip_req": "State was not run because requisites were skipped by another state",
    "onfail": "State was not run because onfail req did not change",
    "onchanges": "State was not run because none of the onchanges reqs changed",
}


def _arguments(function: Function, low: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    params = function.signature.parameters
    named = {name for name, param in params.items()
             if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)}
    takes_any = any(param.kind is param.VAR_KEYWORD for param in params.values())
    kwargs = {key: value for key, value in low.items() if key in named}
    extra = {key: value for key, value in low.items()
             if key not in named and key not in INTERNAL_KEYWORDS}
    if takes_any:
        kwargs.update(extra)
        return kwargs, []
    if not extra:
        return kwargs, []
    keys = [f"'{key}'" for key in extra]
    text = (f"{keys[0]} is an invalid keyword argument" if len(keys) == 1 else
            f"{', '.join(keys[:-1])} and {keys[-1]} are invalid keyword arguments")
    return kwargs, [f"{text} for '{function.name}'"]


def _kind_stats(kind: str, rets: list[dict[str, Any] | None]) -> set[str]:
    base = kind.removesuffix("_any").removesuffix("_all")
    stats: set[str] = set()
    for ret in rets:
        if ret is None:
            stats.add("unmet")
            continue
        if ret.get("skip_req"):
            stats.add("skip_req")
        if base == "onfail":
            if ret["result"] is True:
                stats.add("onfail")
                continue
        elif base == "onchanges":
            # A failed target counts as "no changes", not as a failure.
            stats.add("onchanges" if ret["result"] is False or not ret["changes"]
                      else "onchangesmet")
            continue
        elif ret["result"] is False:
            stats.add("fail")
            continue
        if base == "watch" and ret["changes"]:
            stats.add("change")
            continue
        if ret.get("__state_ran__", True):
            stats.add("met")
    if kind.endswith("_any") or kind == "onfail":
        if stats & {"met", "change"}:
            stats.discard("fail")
        if "onchangesmet" in stats:
            stats -= {"onchanges", "fail"}
        if "onfail" in stats and "met" in stats:
            stats.discard("onfail")
    if kind.endswith("_all") and "onfail" in stats:
        stats.discard("met")
    return stats


def _verdict(stats: set[str]) -> str:
    if "unmet" in stats:
        return "unmet"
    if "fail" in stats:
        return "fail"
    if "skip_req" in stats and "onchangesmet" in stats:
        return "skip_req"
    if "skip_req" in stats and "change" in stats:
        return "skip_watch"
    if "onfail" in stats and "onchangesmet" not in stats:
        return "onfail"
    if "onchanges" in stats and "onchangesmet" not in stats:
        return "onchanges"
    if "change" in stats:
        return "change"
    return "met"


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).astimezone().time().isoformat()
