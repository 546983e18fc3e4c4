"""State module ``service``: systemd units running or stopped, enabled or disabled at boot.

Uses ``systemctl`` (``is-active``, ``is-enabled``, ``start``, ``stop``, ``restart``,
``reload``, ``enable``, ``disable``, ``show -p LoadState``). A ``watch`` on a running
service restarts it (or reloads it with ``reload: True``) when the watched state changed.
"""

from __future__ import annotations

from typing import Any

from autopi_agent.state.context import StateContext, state_return
from autopi_agent.states._process import Completed, ProgramMissing, run_program

__all__ = ["dead", "disabled", "enabled", "mod_watch", "running"]


def _systemctl(*args: str) -> Completed:
    return run_program(["systemctl", *args], timeout=120.0)


def _available(name: str) -> bool:
    state = _systemctl("show", "--property=LoadState", "--value", name)
    return state.ok and state.stdout not in ("", "not-found")


def _active(name: str) -> bool:
    return _systemctl("is-active", name).ok


def _enabled(name: str) -> bool:
    return _systemctl("is-enabled", name).stdout in ("enabled", "enabled-runtime", "static",
                                                     "alias", "indirect", "generated")


def running(ctx: StateContext, name: str, enable: bool | None = None,
            **kwargs: Any) -> dict[str, Any]:
    """Make unit ``name`` run now; ``enable: True``/``False`` also sets it to start at boot."""
    return _ensure(ctx, name, want_active=True, enable=enable)


def dead(ctx: StateContext, name: str, enable: bool | None = None,
         **kwargs: Any) -> dict[str, Any]:
    """Make unit ``name`` stopped now; ``enable`` as for service.running."""
    return _ensure(ctx, name, want_active=False, enable=enable)


def enabled(ctx: StateContext, name: str, **kwargs: Any) -> dict[str, Any]:
    """Make unit ``name`` start at boot (does not start it now)."""
    return _ensure(ctx, name, want_active=None, enable=True)


def disabled(ctx: StateContext, name: str, **kwargs: Any) -> dict[str, Any]:
    """Make unit ``name`` not start at boot (does not stop it now)."""
    return _ensure(ctx, name, want_active=None, enable=False)


def _ensure(ctx: StateContext, name: str, *, want_active: bool | None,
            enable: bool | None) -> dict[str, Any]:
    try:
        if not _available(name):
            return state_return(name, False, f"The named service {name} is not available")
        comments: list[str] = []
        pending = False
        changes: dict[str, Any] = {}
        if want_active is not None:
            done, comment, would = _activity(ctx, name, want_active)
            if done is False:
                return state_return(name, False, comment)
            comments.append(comment)
            pending |= would
            if done:
                changes[name] = want_active
        if enable is not None:
            done, comment, would = _boot(ctx, name, bool(enable))
            if done is False:
                return state_return(name, False, " ".join([*comments, comment]), changes)
            comments.append(comment)
            pending |= would
            if done and name not in changes:
                changes[name] = bool(enable)
    except ProgramMissing as err:
        return state_return(name, False, str(err))
    return state_return(name, None if pending else True, " ".join(comments), changes)


def _activity(ctx: StateContext, name: str, want: bool) -> tuple[bool | None, str, bool]:
    """(True if changed, False if failed, None if nothing to do), comment, test-pending."""
    if _active(name) == want:
        return None, f"The service {name} is already {'running' if want else 'dead'}", False
    if ctx.test:
        return None, f"Service {name} is set to {'start' if want else 'stop'}", True
    done = _systemctl("start" if want else "stop", name)
    if not done.ok:
        return False, f"Service {name} failed to {'start' if want else 'stop'}: " \
            f"{done.stderr or done.stdout}".rstrip(": "), False
    return True, f"{'Started' if want else 'Stopped'} service {name}", False


def _boot(ctx: StateContext, name: str, want: bool) -> tuple[bool | None, str, bool]:
    word = "enabled" if want else "disabled"
    if _enabled(name) == want:
        return None, f"Service {name} is already {word}", False
    if ctx.test:
        return None, f"Service {name} set to be {word}", True
    done = _systemctl("enable" if want else "disable", name)
    if not done.ok:
        return False, f"Failed when setting service {name} to {'enable' if want else 'disable'}", \
            False
    return True, f"Service {name} has been {word}", False


def mod_watch(ctx: StateContext, name: str, sfun: str | None = None, reload: bool = False,
              full_restart: bool = False, **kwargs: Any) -> dict[str, Any]:
    """A watched state changed: restart (or reload) a running unit, start a stopped one."""
    try:
        if sfun == "dead":
            if not _active(name):
                return state_return(name, True, "Service is already stopped")
            verb, done_word = "stop", "stopped"
        elif sfun == "running":
            if _active(name):
                verb, done_word = ("reload", "reloaded") if reload and not full_restart \
                    else ("restart", "restarted")
            else:
                verb, done_word = "start", "started"
        else:
            return state_return(name, False, f"Unable to trigger watch for service.{sfun}")
        if ctx.test:
            return state_return(name, None, f"Service is set to be {done_word}", {name: True})
        done = _systemctl(verb, name)
    except ProgramMissing as err:
        return state_return(name, False, str(err))
    if not done.ok:
        return state_return(name, False, f"Failed to {verb} the service", {name: False})
    return state_return(name, True, f"Service {done_word}", {name: True})
