"""Fixtures for state tests: an agent context with local file/pillar roots, stub programs."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.loader import BUILTIN_MODULES, Loader
from autopi_agent.state.sources import local_services

STUBS = Path(__file__).resolve().parent.parent / "stubs"
STATE_MODULES = {**BUILTIN_MODULES, "state": "autopi_agent.modules.state",
                 "pillar": "autopi_agent.modules.pillar"}

MakeContext = Callable[..., AgentContext]
Roots = Mapping[str, Sequence[str]] | Sequence[str | Path]


def agent_context(cachedir: Path, file_roots: Roots, pillar_roots: Roots = (), *, minion_id: str = "car-0001",
                  grains: dict[str, Any] | None = None, **opts: Any) -> AgentContext:
    """A masterless agent context whose loader has the state and pillar modules."""
    options = {"id": minion_id, "cachedir": str(cachedir), "cmd_enabled": True, **opts}
    ctx = AgentContext.create(options, grains={"id": minion_id, **(grains or {})},
                              loader=Loader(STATE_MODULES, entry_points=False))
    ctx.services.update(local_services(file_roots, pillar_roots))
    return ctx


@pytest.fixture
def make_ctx(tmp_path: Path) -> MakeContext:
    """Build masterless agent contexts caching under tmp_path."""
    def make(file_roots: Roots, pillar_roots: Roots = (), **kwargs: Any) -> AgentContext:
        return agent_context(tmp_path / "cache", file_roots, pillar_roots, **kwargs)
    return make


@pytest.fixture
def stubs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the stub systemctl/apt-get/dpkg-query first on PATH; their state lives in the
    returned directory (services/<unit>/{active,enabled}, packages/<name>, available/<name>,
    calls.log)."""
    state = tmp_path / "stub-state"
    for sub in ("services", "packages", "available"):
        (state / sub).mkdir(parents=True)
    (state / "calls.log").touch()
    monkeypatch.setenv("PATH", f"{STUBS}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STUB_STATE", str(state))
    return state
