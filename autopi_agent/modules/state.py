"""Execution module ``state``: apply SLS state trees (highstate, named SLS, one state) and show
what would run. Returns and retcodes as Salt's ``state`` module: 1 when the tree does not
compile, 2 when a state failed, 5 when the pillar failed to render.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from autopi_agent.fileclient import FileClientError
from autopi_agent.minion.context import AgentContext, WithRetcode
from autopi_agent.state.session import (
    EX_COMPILER_ERROR,
    EX_PILLAR_FAILURE,
    StateLock,
    StateSession,
    retcode_of,
    split_mods,
)
from autopi_agent.transport import TransportError
from autopi_proto.errors import ProtoError

__all__ = ["apply_", "highstate", "show_highstate", "show_low_sls", "show_lowstate",
           "show_sls", "show_top", "single", "sls", "test"]

# Functions whose returns the master should print with the highstate outputter.
__outputter__ = {"apply_": "highstate", "highstate": "highstate", "sls": "highstate",
                 "single": "highstate", "test": "highstate"}


# The master's file server could not be asked or answered badly: nothing ran.
_UNREACHABLE = (TransportError, TimeoutError, ProtoError, FileClientError)


def _unreachable(err: Exception) -> str:
    return (f"The state files could not be fetched from the master "
            f"({type(err).__name__}: {err}); nothing was changed, try again when online")


def _test_flag(ctx: AgentContext, test: Any) -> bool:
    if test is None:
        return bool(ctx.opts.get("test", False))
    if isinstance(test, str):
        return test.strip().lower() in ("true", "yes", "1", "on")
    return bool(test)


def _run(ctx: AgentContext, fun: str, test: Any, saltenv: str | None, pillarenv: str | None,
         pillar: Mapping[str, Any] | None,
         action: Callable[[StateSession], Any]) -> WithRetcode:
    with StateLock(ctx) as lock:
        if not lock.acquired:
            return WithRetcode([f'The function "{fun}" cannot run: another state run is in '
                                "progress on this agent; try again when it finishes"],
                               EX_COMPILER_ERROR)
        try:
            session = StateSession(ctx, test=_test_flag(ctx, test), saltenv=saltenv,
                                   pillarenv=pillarenv, pillar=pillar)
            errors = session.pillar_errors()
            if errors:
                return WithRetcode(errors, EX_PILLAR_FAILURE)
            ret = action(session)
        except _UNREACHABLE as err:
            return WithRetcode([_unreachable(err)], EX_COMPILER_ERROR)
        return WithRetcode(ret, retcode_of(ret, session.chunks))


def apply_(ctx: AgentContext, mods: Any = None, test: Any = None, saltenv: str | None = None,
           pillarenv: str | None = None, exclude: Any = None,
           pillar: Mapping[str, Any] | None = None) -> WithRetcode:
    """Apply the SLS ``mods`` (comma-separated or a list), or the whole highstate (the top
    file's states for this agent) when none are named.

    ``test=True`` changes nothing and reports what would change (``result: None``).
    ``saltenv`` picks the file-server environment, ``pillarenv`` the pillar one,
    ``exclude`` SLS or IDs to leave out, ``pillar`` values merged over the pillar.

    CLI Example::

        cloud-master run car-0001 state.apply
        cloud-master run car-0001 state.apply obd.logger test=True
    """
    if split_mods(mods):
        return sls(ctx, mods, test=test, saltenv=saltenv, pillarenv=pillarenv,
                   exclude=exclude, pillar=pillar)
    return highstate(ctx, test=test, saltenv=saltenv, pillarenv=pillarenv, exclude=exclude,
                     pillar=pillar)


def highstate(ctx: AgentContext, test: Any = None, saltenv: str | None = None,
              pillarenv: str | None = None, exclude: Any = None,
              pillar: Mapping[str, Any] | None = None) -> WithRetcode:
    """Apply every state the top file assigns to this agent (arguments as state.apply).

    CLI Example::

        cloud-master run car-0001 state.highstate test=True
    """
    return _run(ctx, "state.highstate", test, saltenv, pillarenv, pillar,
                lambda session: session.highstate(exclude))


def sls(ctx: AgentContext, mods: Any, test: Any = None, saltenv: str | None = None,
        pillarenv: str | None = None, exclude: Any = None,
        pillar: Mapping[str, Any] | None = None) -> WithRetcode:
    """Apply the named SLS files (``mods``: ``a,b`` or a list; arguments as state.apply).

    CLI Example::

        cloud-master run car-0001 state.sls agent.config,obd.logger
    """
    names = split_mods(mods)
    return _run(ctx, "state.sls", test, saltenv, pillarenv, pillar,
                lambda session: session.sls(names, exclude))


def test(ctx: AgentContext, mods: Any = None, saltenv: str | None = None,
         pillarenv: str | None = None, pillar: Mapping[str, Any] | None = None) -> WithRetcode:
    """``state.apply`` with ``test=True``: report what would change, change nothing.

    CLI Example::

        cloud-master run car-0001 state.test obd.logger
    """
    return apply_(ctx, mods, test=True, saltenv=saltenv, pillarenv=pillarenv, pillar=pillar)


def single(ctx: AgentContext, fun: str, name: str, test: Any = None, saltenv: str | None = None,
           **kwargs: Any) -> WithRetcode:
    """Run one state function with keyword arguments, without an SLS file.

    CLI Example::

        cloud-master run car-0001 state.single file.managed /etc/motd contents='hello'
    """
    return _run(ctx, "state.single", test, saltenv, None, None,
                lambda session: session.single(fun, name, **kwargs))


def _show(ctx: AgentContext, saltenv: str | None, pillarenv: str | None,
          action: Callable[[StateSession], Any], *, error_retcode: int = EX_COMPILER_ERROR
          ) -> WithRetcode:
    try:
        ret = action(StateSession(ctx, saltenv=saltenv, pillarenv=pillarenv))
    except _UNREACHABLE as err:
        return WithRetcode([_unreachable(err)], EX_COMPILER_ERROR)
    failed = isinstance(ret, list) and ret and all(isinstance(item, str) for item in ret)
    return WithRetcode(ret, error_retcode if failed else 0)


def show_top(ctx: AgentContext, saltenv: str | None = None) -> WithRetcode:
    """The SLS names the top file gives this agent, per environment.

    CLI Example::

        cloud-master run car-0001 state.show_top
    """
    return _show(ctx, saltenv, None, lambda session: session.show_top())


def show_highstate(ctx: AgentContext, saltenv: str | None = None,
                   pillarenv: str | None = None) -> WithRetcode:
    """The high data of this agent's highstate, as rendered (nothing runs).

    CLI Example::

        cloud-master run car-0001 state.show_highstate
    """
    return _show(ctx, saltenv, pillarenv, lambda session: session.show_highstate())


def show_sls(ctx: AgentContext, mods: Any, saltenv: str | None = None,
             pillarenv: str | None = None) -> WithRetcode:
    """The high data of the named SLS files, as rendered (nothing runs).

    CLI Example::

        cloud-master run car-0001 state.show_sls obd.logger
    """
    names = split_mods(mods)
    return _show(ctx, saltenv, pillarenv, lambda session: session.show_sls(names))


def show_lowstate(ctx: AgentContext, saltenv: str | None = None,
                  pillarenv: str | None = None) -> WithRetcode:
    """The low chunks of this agent's highstate in the order they would run (nothing runs).

    CLI Example::

        cloud-master run car-0001 state.show_lowstate --out json
        autopi-agent call --local --file-root /srv/salt state.show_lowstate --out json
    """
    # As Salt: errors are the return, the retcode stays 0.
    return _show(ctx, saltenv, pillarenv, lambda session: session.show_lowstate(),
                 error_retcode=0)


def show_low_sls(ctx: AgentContext, mods: Any, saltenv: str | None = None,
                 pillarenv: str | None = None) -> WithRetcode:
    """The low chunks of the named SLS files, in run order (nothing runs).

    CLI Example::

        cloud-master run car-0001 state.show_low_sls obd.logger
    """
    names = split_mods(mods)
    return _show(ctx, saltenv, pillarenv, lambda session: session.show_low_sls(names))
