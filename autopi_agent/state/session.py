"""One state run put together: file client, pillar, rendering, compiling, running, retcode.

The ``state.*`` execution functions are thin wrappers over ``StateSession``. Returns follow
Salt: a dict of state results keyed ``state_|-id_|-name_|-fun``, or a list of error
sentences when the tree does not compile; ``retcode`` is 0, 1 (does not compile),
2 (a state failed) or 5 (pillar failed to render), as ``salt/modules/state.py`` sets them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from autopi_agent.fileclient import FileClient
from autopi_agent.minion.context import AgentContext
from autopi_agent.state.compiler import (
    compile_high,
    compile_low,
    order_chunks,
    verify_high,
)
from autopi_agent.state.context import StateContext
from autopi_agent.state.highstate import Highstate, RenderInputs
from autopi_agent.state.ordering import DependencyGraph, low_tag
from autopi_agent.state.runner import StateRunner
from autopi_agent.state.sources import (
    cached_pillar,
    functions_for,
    pillar_for,
    state_files_for,
)
from autopi_agent.states import state_loader
from autopi_common.sls.pillar import merge_recursive

__all__ = ["EX_COMPILER_ERROR", "EX_PILLAR_FAILURE", "EX_STATE_FAILURE", "OFFLINE_WARNING",
           "StateLock", "StateSession", "offline_pillar", "retcode_of", "split_mods"]

EX_COMPILER_ERROR, EX_STATE_FAILURE, EX_PILLAR_FAILURE = 1, 2, 5
NO_STATES_TAG = "no_|-states_|-states_|-None"
OFFLINE_WARNING = ("The master could not be reached: this run used the state files and pillar "
                   "cached on the agent")


def offline_pillar(ctx: AgentContext) -> dict[str, Any]:
    """The pillar an offline run uses: the one in memory, else the one cached on disk."""
    current = ctx.services.get("pillar")
    return current if isinstance(current, dict) else cached_pillar(ctx)


def split_mods(mods: Any) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` as a list of SLS names."""
    if mods is None:
        return []
    if isinstance(mods, (list, tuple)):
        return [str(mod).strip() for mod in mods if str(mod).strip()]
    return [part.strip() for part in str(mods).split(",") if part.strip()]


class StateSession:
    """Everything one state function needs; build one per call."""

    def __init__(self, ctx: AgentContext, *, test: bool = False, saltenv: str | None = None,
                 pillarenv: str | None = None, pillar: Mapping[str, Any] | None = None,
                 refresh_pillar: bool = True) -> None:
        self.ctx = ctx
        self.test = bool(test)
        self.saltenv = saltenv
        self.client: FileClient
        self.client, self.offline = state_files_for(ctx)
        base = offline_pillar(ctx) if self.offline else \
            pillar_for(ctx, refresh=refresh_pillar, pillarenv=pillarenv)
        self.pillar = merge_recursive(base, pillar) if pillar else base
        self.functions = functions_for(ctx)
        self.states = ctx.services.get("state_loader") or state_loader()
        self.chunks: list[dict[str, Any]] = []
        self.inputs = RenderInputs(ctx.minion_id, ctx.grains, self.pillar,
                                   {**ctx.opts, "test": self.test}, self.functions)

    def pillar_errors(self) -> list[str] | None:
        """Salt refuses to run states on a pillar that failed to render."""
        errors = self.pillar.get("_errors")
        if not errors:
            return None
        return ["Pillar failed to render with the following messages:", *map(str, errors)]

    def highstate_renderer(self, saltenv: str | None = None) -> Highstate:
        return Highstate(self.client, self.inputs, saltenv or self.saltenv)

    def show_top(self) -> dict[str, list[str]] | list[str]:
        matches, errors = self.highstate_renderer().matches()
        return errors or matches

    def show_highstate(self) -> dict[str, Any] | list[str]:
        renderer = self.highstate_renderer()
        matches, errors = renderer.matches()
        high, render_errors = renderer.render_highstate(matches)
        return errors + render_errors or high

    def show_sls(self, mods: list[str]) -> dict[str, Any] | list[str]:
        high, errors = self.render_sls(mods)
        errors += verify_high(high)
        return errors or high

    def render_sls(self, mods: list[str]) -> tuple[dict[str, Any], list[str]]:
        env = self.saltenv or "base"
        return self.highstate_renderer(env).render_highstate({env: mods})

    def show_lowstate(self) -> list[Any]:
        renderer = self.highstate_renderer()
        matches, errors = renderer.matches()
        high, render_errors = renderer.render_highstate(matches)
        chunks, compile_errors = self.compile(high)
        return errors + render_errors + compile_errors or chunks

    def show_low_sls(self, mods: list[str]) -> list[Any]:
        # As Salt's show_low_sls: no extend, exclude or *_in requisites are applied.
        high, errors = self.render_sls(mods)
        errors += verify_high(high)
        if errors:
            return errors
        chunks, order_errors, _ = order_chunks(compile_high(high), self.runner().has_mod_watch)
        return order_errors or chunks

    def compile(self, high: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
        chunks, errors, _ = compile_low(high, self.runner().has_mod_watch)
        return chunks, errors

    def runner(self) -> StateRunner:
        return StateRunner(self.states, self.context_for, test=self.test,
                           failhard=bool(self.ctx.opts.get("failhard", False)))

    def context_for(self, low: Mapping[str, Any]) -> StateContext:
        return StateContext(self.ctx, self.test, str(low.get("__env__") or self.saltenv or "base"),
                            self.client, self.pillar, low, self.functions)

    def highstate(self, exclude: Any = None) -> dict[str, Any] | list[str]:
        renderer = self.highstate_renderer()
        matches, errors = renderer.matches()
        if errors:
            return errors
        if not matches:
            return {NO_STATES_TAG: {"result": False, "name": "No States", "changes": {},
                                    "comment": "No Top file or master_tops data matches found.",
                                    "__run_num__": 0}}
        high, errors = renderer.render_highstate(matches)
        return errors or self.run_high(high, exclude)

    def sls(self, mods: list[str], exclude: Any = None) -> dict[str, Any] | list[str]:
        high, errors = self.render_sls(mods)
        return errors or self.run_high(high, exclude)

    def run_high(self, high: dict[str, Any], exclude: Any = None) -> dict[str, Any] | list[str]:
        if exclude:
            high.setdefault("__exclude__", []).extend(split_mods(exclude)
                                                      if isinstance(exclude, str) else exclude)
        runner = self.runner()
        ret = runner.call_high(high)
        self.chunks = [chunk for chunk in runner.graph.chunks.values()]
        return self.mark_offline(ret)

    def mark_offline(self, ret: dict[str, Any] | list[str]) -> dict[str, Any] | list[str]:
        """Say in each result that the run used cached files and pillar (Salt's ``warnings``)."""
        if self.offline and isinstance(ret, dict):
            for result in ret.values():
                if isinstance(result, dict):
                    result.setdefault("warnings", []).append(OFFLINE_WARNING)
        return ret

    def single(self, fun: str, name: str, **kwargs: Any) -> dict[str, Any] | list[str]:
        state, dot, function = fun.partition(".")
        if not dot:
            return ["Invalid function passed"]
        low = {**kwargs, "state": state, "fun": function, "__id__": name, "name": name}
        runner = self.runner()
        runner.graph = DependencyGraph()
        return {low_tag(low): runner.call(low)}


def retcode_of(ret: Any, chunks: Sequence[Mapping[str, Any]] | None = None) -> int:
    """Salt's job retcode for a state return: 1 errors, 2 a state failed, else 0.

    A failed state is forgiven when ``onfail`` handlers for it exist and all succeeded.
    """
    if isinstance(ret, list):
        return EX_COMPILER_ERROR
    if not isinstance(ret, Mapping) or not ret:
        return EX_STATE_FAILURE
    for tag, result in ret.items():
        if not isinstance(result, Mapping) or result.get("result") is not False:
            continue
        if not _handled_by_onfail(tag, ret, chunks or []):
            return EX_STATE_FAILURE
    return 0


def _handled_by_onfail(tag: str, ret: Mapping[str, Any],
                       chunks: Sequence[Mapping[str, Any]]) -> bool:
    state, id_ = tag.split("_|-")[:2] if "_|-" in tag else ("", "")
    handlers = [chunk for chunk in chunks for ref in chunk.get("onfail") or []
                if ref == id_ or (isinstance(ref, Mapping) and ref.get(state) == id_)]
    results = [ret.get(low_tag(chunk), {}).get("result") for chunk in handlers]
    return bool(results) and all(result is True for result in results)


class StateLock:
    """One state run at a time per agent, as Salt (a second one is refused, not queued)."""

    def __init__(self, ctx: AgentContext) -> None:
        self._lock: threading.Lock = ctx.services.setdefault("state_lock", threading.Lock())
        self.acquired = False

    def __enter__(self) -> StateLock:
        self.acquired = self._lock.acquire(blocking=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.acquired:
            self._lock.release()
