"""``unless``, ``onlyif`` and ``creates``: decide whether a state runs, as Salt's ``_run_check``.

``onlyif``: the state runs only if every command exits 0 (or every function returns
something true). ``unless``: the state is skipped only if every command exits 0.
``creates``: skipped when the path (or every path of a list) exists. A skipped state
succeeds with no changes and ``skip_watch``, so a watcher does not fire ``mod_watch``.
Shell commands go through ``cmd.run_all``, so they obey ``cmd_enabled`` like any shell use:
when shell access is off the state fails and says why, instead of silently skipping.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from autopi_agent.minion.errors import CommandExecutionError, ExecutionError
from autopi_agent.state.context import StateContext
from autopi_proto.grainmatch import traverse

__all__ = ["CONDITION_KEYS", "check_conditions"]

CONDITION_KEYS = ("onlyif", "unless", "creates")
_CMD_OPTIONS = ("cwd", "env", "timeout", "shell")


class _ShellRefused(Exception):
    pass


def check_conditions(ctx: StateContext, low: Mapping[str, Any]) -> dict[str, Any]:
    """``{"result": True, ...}`` when the state must be skipped, ``{"result": False, ...}``
    when it must run; a refused shell condition gives ``{"result": False, "error": True}``."""
    ret: dict[str, Any] = {"result": False, "comment": []}
    try:
        for key, check in (("onlyif", _onlyif), ("unless", _unless)):
            if key in low:
                result, comment, skip = check(ctx, low, low[key])
                ret["result"] = ret["result"] or result
                ret["comment"].append(comment)
                if skip:
                    ret["skip_watch"] = True
    except _ShellRefused as err:
        return {"result": False, "error": True, "comment": str(err)}
    if "creates" in low:
        result, comment = _creates(low["creates"])
        ret["result"] = ret["result"] or result
        ret["comment"].append(comment)
        if result:
            ret["skip_watch"] = True
    return ret


def _onlyif(ctx: StateContext, low: Mapping[str, Any], entries: Any) -> tuple[bool, str, bool]:
    for entry in entries if isinstance(entries, list) else [entries]:
        if isinstance(entry, str):
            passed = _exit_code(ctx, low, "onlyif", entry) == 0
        elif isinstance(entry, Mapping):
            if "fun" not in entry:
                return False, f"no `fun` argument in onlyif: {dict(entry)}", False
            passed = bool(_function(ctx, entry))
        else:
            return False, "onlyif execution failed, bad type passed", False
        if not passed:
            return True, "onlyif condition is false", True
    return False, "onlyif condition is true", False


def _unless(ctx: StateContext, low: Mapping[str, Any], entries: Any) -> tuple[bool, str, bool]:
    for entry in entries if isinstance(entries, list) else [entries]:
        if isinstance(entry, str):
            passed = _exit_code(ctx, low, "unless", entry) == 0
        elif isinstance(entry, Mapping):
            if "fun" not in entry:
                return False, f"no `fun` argument in unless: {dict(entry)}", False
            passed = bool(_function(ctx, entry))
        else:
            return False, "unless condition is false, bad type passed", False
        if not passed:
            return False, "unless condition is false", False
    return True, "unless condition is true", True


def _creates(paths: Any) -> tuple[bool, str]:
    if isinstance(paths, str) and os.path.exists(paths):
        return True, f"{paths} exists"
    if isinstance(paths, list) and all(os.path.exists(str(path)) for path in paths):
        return True, "All files in creates exist"
    return False, "Creates files not found"


def _exit_code(ctx: StateContext, low: Mapping[str, Any], key: str, command: str) -> int:
    options = {name: low[name] for name in _CMD_OPTIONS if low.get(name) is not None}
    try:
        done = ctx.call("cmd.run_all", command, python_shell=True, **options)
    except CommandExecutionError as err:
        raise _ShellRefused(f"{key} condition could not run: {err}") from err
    return int(done.get("retcode", 1)) if isinstance(done, Mapping) else 1


def _function(ctx: StateContext, entry: Mapping[str, Any]) -> Any:
    options = dict(entry)
    fun = str(options.pop("fun"))
    args = options.pop("args", [])
    get_return = options.pop("get_return", None)
    try:
        result = ctx.call(fun, *(args if isinstance(args, list) else [args]), **options)
    except ExecutionError as err:
        raise _ShellRefused(f"condition function {fun} failed: {err}") from err
    return traverse(result, get_return) if get_return else result
