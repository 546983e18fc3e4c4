"""State module ``cmd``: run a command as a state (``cmd.run``), or only when watched (``cmd.wait``).

Commands run through the ``cmd`` execution module, so they obey ``cmd_enabled``: with
shell access off, a ``cmd.run`` state fails and says so. ``unless``/``onlyif``/``creates``
are handled by the state engine before the command runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autopi_agent.minion.errors import ExecutionError
from autopi_agent.state.context import StateContext, state_return

__all__ = ["mod_watch", "run", "wait"]


def run(ctx: StateContext, name: str, cwd: str | None = None, shell: str | None = None,
        env: Any = None, timeout: float | None = None,
        success_retcodes: list[int] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run ``name`` with the shell; changes are its ``pid``, ``retcode``, ``stdout``, ``stderr``.

    ``cwd`` working directory, ``env`` variables (a mapping or a list of one-key mappings),
    ``timeout`` seconds, ``success_retcodes`` exit codes that also count as success.
    """
    environment = _environment(env)
    if environment is None:
        return state_return(name, False, "Invalidly-formatted 'env' parameter. See documentation.")
    if ctx.test:
        return state_return(name, None, f'Command "{name}" would have been executed',
                            {"cmd": name})
    options: dict[str, Any] = {"cwd": cwd, "timeout": timeout, "python_shell": True,
                               "env": environment or None}
    if shell:
        options["shell"] = shell
    try:
        done = ctx.call("cmd.run_all", name, **options)
    except ExecutionError as err:
        return state_return(name, False, str(err))
    retcode = int(done.get("retcode", 1))
    ok = retcode == 0 or retcode in (success_retcodes or [])
    return state_return(name, ok, f'Command "{name}" run', done)


def wait(ctx: StateContext, name: str, **kwargs: Any) -> dict[str, Any]:
    """Do nothing by itself; run ``name`` (as ``cmd.run``) when a watched state changes."""
    return state_return(name, True, "")


def mod_watch(ctx: StateContext, name: str, sfun: str | None = None,
              **kwargs: Any) -> dict[str, Any]:
    """Run the command because a watched state changed (``cmd.run`` and ``cmd.wait``)."""
    if sfun in ("run", "wait", "watch"):
        return run(ctx, name, **kwargs)
    return state_return(name, False, f"cmd.{sfun} does not work with the watch requisite, "
                        "please use cmd.wait or cmd.wait_script")


def _environment(env: Any) -> dict[str, str] | None:
    if env is None:
        return {}
    if isinstance(env, Mapping):
        return {str(key): str(value) for key, value in env.items()}
    if isinstance(env, list) and all(isinstance(item, Mapping) for item in env):
        return {str(key): str(value) for item in env for key, value in item.items()}
    return None
