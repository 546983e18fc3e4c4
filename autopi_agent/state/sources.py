"""Where a state run gets its files, pillar and ``salt`` functions, with or without a master.

With a master, the daemon registers ``ctx.services["master_call"]``: state files come from
the master's file server (cached by hash) and pillar from its ``_pillar`` reply. Masterless
(``autopi-agent call --local``), ``local_services(file_roots, pillar_roots)`` registers a
local file client and a local pillar compiler instead. Every pillar fetched is kept in
``cachedir/pillar.p`` (atomic write, mode 0600), so an agent that is offline still runs
states with the pillar it last received. Offline (the master does not answer within
``PROBE_TIMEOUT_S``, or the agent has no master link and no roots), ``state_files_for``
serves the files the master sent before from ``cachedir/files/``: offline highstate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from autopi_agent.fileclient import FileClient, LocalFileClient, RemoteFileClient, file_envs
from autopi_agent.minion.context import AgentContext, WithRetcode
from autopi_agent.minion.errors import CommandExecutionError, UnknownFunctionError
from autopi_agent.transport import TransportError
from autopi_common.fsutil import ensure_dir, write_atomic
from autopi_proto import codec
from autopi_proto.errors import DecodeError, ProtoError

if TYPE_CHECKING:  # Jinja2 loads only when something is rendered: the agent starts faster.
    from autopi_common.sls.jinja import SaltFunctions

__all__ = ["LocalPillar", "PillarSource", "cached_fileclient", "cached_pillar", "fileclient_for",
           "functions_for", "local_services", "pillar_for", "probe_master", "refresh_pillar",
           "state_files_for"]

log = structlog.get_logger(__name__)

PILLAR_CACHE = "pillar.p"
# How long a state run waits for the master before it runs from the cache instead.
PROBE_TIMEOUT_S = 10.0


class PillarSource(Protocol):
    """Compiles the pillar of this agent without asking a master."""

    def compile(self, minion_id: str, grains: Mapping[str, Any],
                pillarenv: str | None = None) -> dict[str, Any]:
        """The pillar; problems are listed under ``_errors``."""


class LocalPillar:
    """Pillar from local ``pillar_roots`` (masterless use)."""

    def __init__(self, pillar_roots: Mapping[str, Sequence[str | Path]]) -> None:
        from autopi_common.sls.pillar import PillarRenderer
        from autopi_common.sls.roots import FileRoots

        self.renderer = PillarRenderer(FileRoots(pillar_roots))

    def compile(self, minion_id: str, grains: Mapping[str, Any],
                pillarenv: str | None = None) -> dict[str, Any]:
        return self.renderer.compile(minion_id, grains, pillarenv=pillarenv)


def local_services(file_roots: Mapping[str, Sequence[str | Path]] | Sequence[str | Path],
                   pillar_roots: Mapping[str, Sequence[str | Path]] | Sequence[str | Path] = (),
                   ) -> dict[str, Any]:
    """Services for a masterless agent: put them in ``ctx.services`` before calling states.

    ``file_roots``/``pillar_roots`` are ``{env: [dir, ...]}`` or a list of directories
    (meaning the ``base`` environment), as ``--file-root``/``--pillar-root`` give them.
    """
    return {"fileclient": LocalFileClient(_roots(file_roots)),
            "pillar_source": LocalPillar(_roots(pillar_roots))}


def _roots(roots: Mapping[str, Sequence[str | Path]] | Sequence[str | Path]
           ) -> dict[str, list[str]]:
    if isinstance(roots, Mapping):
        return {str(env): [str(path) for path in paths] for env, paths in roots.items()}
    return {"base": [str(path) for path in roots]} if roots else {}


def cached_fileclient(ctx: AgentContext) -> LocalFileClient | None:
    """The files the master served before (``cachedir/files/<saltenv>/``), or None."""
    files = Path(str(ctx.opts.get("cachedir", "cache"))) / "files"
    envs = sorted(entry.name for entry in files.iterdir() if entry.is_dir()) \
        if files.is_dir() else []
    if not envs:
        return None
    return LocalFileClient({env: [str(files / env)] for env in envs})


def probe_master(ctx: AgentContext, timeout: float = PROBE_TIMEOUT_S
                 ) -> tuple[list[str] | None, Exception | None]:
    """Ask the master's file server for its environments within ``timeout`` seconds:
    ``(envs, None)`` when it answers, ``(None, why)`` when it cannot be reached."""
    link = ctx.services.get("master")
    authenticated = getattr(link, "authenticated", None)
    if authenticated is not None and not authenticated.is_set():
        # Never ask: the request would wait for the authentication.
        return None, TransportError("the agent is not authenticated with the master")
    master_call = ctx.services.get("master_call")
    if master_call is None:
        return None, TransportError("the agent has no master link")
    try:
        reply = master_call({"cmd": "_file_envs"}, None, timeout)
    except (TransportError, TimeoutError, ProtoError) as err:
        log.warning("state.master_unreachable", error=f"{type(err).__name__}: {err}")
        return None, err
    return file_envs(reply), None


def state_files_for(ctx: AgentContext) -> tuple[FileClient, bool]:
    """The state files for one run, and whether they come from the cache because the master
    cannot be reached (offline highstate). Raises the master's error when nothing is cached.

    The reachability probe is the run's ``_file_envs`` request: its answer is handed to the
    file client, so a highstate does not ask for it again."""
    if ctx.services.get("fileclient") is not None:
        return fileclient_for(ctx), False
    if ctx.services.get("master_call") is None:
        problem: Exception | None = None
    else:
        envs, problem = probe_master(ctx)
        if problem is None:
            return fileclient_for(ctx, envs=envs), False
    cached = cached_fileclient(ctx)
    if cached is None:
        if problem is None:
            return fileclient_for(ctx), False  # raises: no master, no roots, no cache
        raise problem
    log.warning("state.offline", cachedir=str(ctx.opts.get("cachedir")))
    return cached, True


def fileclient_for(ctx: AgentContext, *, envs: list[str] | None = None) -> FileClient:
    """The local file client if one is registered, else a fresh client of the master's files
    (``envs``: the master's environments, when a probe already asked for them)."""
    client = ctx.services.get("fileclient")
    if client is not None:
        return client  # type: ignore[no-any-return]
    master_call = ctx.services.get("master_call")
    if master_call is None:
        raise CommandExecutionError("no state files: this agent has no master link and no "
                                    "local file_roots; use 'autopi-agent call --local "
                                    "--file-root DIR'")
    return RemoteFileClient(master_call, ctx.opts.get("cachedir", "cache"), envs=envs)


def pillar_for(ctx: AgentContext, *, refresh: bool = False,
               pillarenv: str | None = None) -> dict[str, Any]:
    """This agent's pillar: fetched (locally compiled or from the master) when ``refresh``
    or not yet known; the cached copy when the master cannot be reached."""
    current = ctx.services.get("pillar")
    if isinstance(current, dict) and not refresh:
        return current
    try:
        pillar = _fetch_pillar(ctx, pillarenv)
    except Exception as err:  # offline, timed out, refused: fall back to what we had
        log.warning("pillar.fetch_failed", error=f"{type(err).__name__}: {err}")
        pillar = current if isinstance(current, dict) else cached_pillar(ctx)
        ctx.services["pillar"] = pillar
        return pillar
    ctx.services["pillar"] = pillar
    _save(ctx, pillar)
    return pillar


def refresh_pillar(ctx: AgentContext) -> bool:
    """Fetch the pillar now; False (keeping the pillar we had) when that failed."""
    try:
        pillar = _fetch_pillar(ctx, None)
    except Exception as err:  # offline, timed out, refused
        log.warning("pillar.refresh_failed", error=f"{type(err).__name__}: {err}")
        return False
    ctx.services["pillar"] = pillar
    _save(ctx, pillar)
    return True


def _fetch_pillar(ctx: AgentContext, pillarenv: str | None) -> dict[str, Any]:
    source = ctx.services.get("pillar_source")
    if source is not None:
        return dict(source.compile(ctx.minion_id, ctx.grains, pillarenv))
    master_call = ctx.services.get("master_call")
    if master_call is None:
        return cached_pillar(ctx)
    load = {"cmd": "_pillar", "id": ctx.minion_id, "grains": ctx.grains, "saltenv": "base",
            "pillarenv": pillarenv, "ver": "2", "pillar_override": {}, "extra_minion_data": {}}
    reply = master_call(load, "pillar", float(ctx.opts.get("return_timeout", 60)))
    if not isinstance(reply, dict):
        raise DecodeError(f"the master's pillar is a {type(reply).__name__}, not a mapping")
    return reply


def cached_pillar(ctx: AgentContext) -> dict[str, Any]:
    """The pillar saved by the last successful fetch, or ``{}``."""
    path = Path(str(ctx.opts.get("cachedir", "cache"))) / PILLAR_CACHE
    try:
        data = codec.unpackb(path.read_bytes())
    except (OSError, DecodeError) as err:
        log.info("pillar.no_cache", path=str(path), reason=type(err).__name__)
        return {}
    return data if isinstance(data, dict) else {}


def _save(ctx: AgentContext, pillar: Mapping[str, Any]) -> None:
    cachedir = Path(str(ctx.opts.get("cachedir", "cache")))
    try:
        ensure_dir(cachedir, 0o700)
        write_atomic(cachedir / PILLAR_CACHE, codec.packb(dict(pillar)), 0o600)
    except OSError as err:  # a read-only cache must not stop the state run
        log.warning("pillar.cache_write_failed", error=str(err))


def functions_for(ctx: AgentContext) -> SaltFunctions:
    """The ``salt`` object templates use: every execution function of this agent."""
    def lookup(name: str) -> Any:
        try:
            ctx.loader.function(name)
        except UnknownFunctionError:
            raise KeyError(name) from None

        def call(*args: Any, **kwargs: Any) -> Any:
            value = ctx.call(name, *args, **kwargs)
            return value.ret if isinstance(value, WithRetcode) else value
        return call

    from autopi_common.sls.jinja import SaltFunctions

    return SaltFunctions(lookup, ctx.loader.list_functions)
