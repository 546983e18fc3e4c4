"""Render a state tree into high data: top file, SLS files, ``include``, ``extend``, ``exclude``.

As Salt's ``BaseHighState``: included SLS are rendered first; every state declaration
without an ``order`` gets the next automatic order (from 10000, in rendering order), so
a tree runs in the order it is written; ``file.managed:`` keys are split into state and
function; each ID remembers its ``__sls__`` and ``__env__``. Problems are collected as
sentences, never raised, so one bad file does not hide the others.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autopi_agent.fileclient import FileClient, state_paths
from autopi_common.sls import RenderError, SlsError
from autopi_common.sls.jinja import SaltFunctions
from autopi_common.sls.render import DEFAULT_PIPE, render_sls, sls_variables
from autopi_common.sls.top import merge_tops, top_matches, verify_top

__all__ = ["Highstate", "RenderInputs"]

HighData = dict[str, Any]
_FIRST_ORDER = 10000


@dataclass(frozen=True, slots=True)
class RenderInputs:
    """What SLS templates see: the minion's id, grains, pillar, options and ``salt``."""

    minion_id: str
    grains: Mapping[str, Any]
    pillar: Mapping[str, Any]
    opts: Mapping[str, Any] = field(default_factory=dict)
    functions: SaltFunctions | None = None
    renderer: str = DEFAULT_PIPE


class Highstate:
    """One rendering of a tree from ``client``; keeps the automatic order across files."""

    def __init__(self, client: FileClient, inputs: RenderInputs, saltenv: str | None = None) -> None:
        self.client = client
        self.inputs = inputs
        self.saltenv = saltenv
        self.iorder = _FIRST_ORDER
        self._avail: dict[str, list[str]] = {}

    # -- environments and the top file ------------------------------------------------

    def envs(self) -> list[str]:
        """``base`` first, then the other environments the file client knows."""
        return ["base"] + sorted(env for env in self.client.envs() if env != "base")

    def avail(self, env: str) -> list[str]:
        """The SLS names in ``env`` (asked once per rendering)."""
        if env not in self._avail:
            self._avail[env] = self.client.list_states(env)
        return self._avail[env]

    def get_top(self) -> HighData:
        """The merged top data; raises RenderError or TopError when a top file is bad."""
        tops: dict[str, list[Any]] = {}
        for env in [self.saltenv] if self.saltenv else self.envs():
            path = self.client.cache_file("top.sls", env)
            if path is None:
                tops.setdefault(env, []).append({})
                continue
            data = render_sls(path.read_text(encoding="utf-8"), source=f"salt://top.sls ({env})",
                              context=self._context(env, "", "top.sls"),
                              fetch=self._fetcher(env), default=self.inputs.renderer)
            tops.setdefault(env, []).append(data)
        return merge_tops(tops)

    def top_matches(self, top: Mapping[str, Any]) -> dict[str, list[str]]:
        """``{env: [sls, ...]}`` this minion gets from ``top``."""
        return top_matches(top, self.inputs.minion_id, self.inputs.grains, self.inputs.pillar,
                           saltenv=self.saltenv, envs=self.envs())

    def matches(self) -> tuple[dict[str, list[str]], list[str]]:
        """The top matches and the top file's problems (as sentences)."""
        try:
            top = self.get_top()
        except SlsError as err:
            return {}, [f"Unable to render top file: {err}"]
        return self.top_matches(top), verify_top(top)

    # -- rendering -------------------------------------------------------------------

    def render_highstate(self, matches: Mapping[str, list[str]]) -> tuple[HighData, list[str]]:
        """Render every SLS ``matches`` names (globs allowed) into one high data dict."""
        high: HighData = {}
        errors: list[str] = []
        mods: set[str] = set()
        for env, patterns in matches.items():
            for pattern in patterns:
                for sls in fnmatch.filter(self.avail(env), pattern) or [pattern]:
                    if f"{env}:{sls}" in mods:
                        continue
                    state, sls_errors = self.render_state(sls, env, mods, matches)
                    if state:
                        _merge_included(high, state, sls_errors)
                    errors += [_missing(pattern, env) if f"SLS {pattern} in saltenv" in error
                               and "is not available" in error else error
                               for error in sls_errors]
        if "__extend__" in high:
            unique: list[Any] = []
            for item in (pair for ext in high["__extend__"] for pair in ext.items()):
                if item not in unique:
                    unique.append(item)
            high["__extend__"] = [{name: body} for name, body in unique]
        return high, errors

    def render_state(self, sls: str, env: str, mods: set[str],
                     matches: Mapping[str, list[str]] | None = None) -> tuple[HighData, list[str]]:
        """Render one SLS and everything it includes."""
        errors: list[str] = []
        found = self._find(sls, env)
        if found is None:
            return {}, [f"Specified SLS {sls} in saltenv {env} is not available on the salt "
                        "master or through a configured fileserver"]
        relpath, text = found
        mods.add(f"{env}:{sls}")
        try:
            state = render_sls(text, source=f"salt://{relpath}", default=self.inputs.renderer,
                               context=self._context(env, sls, relpath), fetch=self._fetcher(env))
        except RenderError as err:
            return {}, [f"Rendering SLS '{env}:{sls}' failed: {err}"]
        if not state:
            return {}, errors
        if not isinstance(state, dict):
            return {}, [f"SLS {sls} does not render to a dictionary"]
        include = state.pop("include", [])
        if not isinstance(include, list):
            errors.append(f"Include Declaration in SLS {sls} is not formed as a list")
            include = []
        _handle_extend(state, sls, env, errors)
        _handle_exclude(state, sls, errors)
        _handle_state_decls(state, sls, env, errors)
        for entry in include:
            self._include(state, entry, sls, relpath, env, mods, matches or {}, errors)
        self._handle_iorder(state)
        return state, errors

    def _include(self, state: HighData, entry: Any, sls: str, relpath: str, env: str,
                 mods: set[str], matches: Mapping[str, list[str]], errors: list[str]) -> None:
        env_key, target = (next(iter(entry.items())) if isinstance(entry, dict)
                           else (env, entry))
        target = str(target)
        if env_key != "_xenv" and env_key not in self.envs():
            errors.append(f"Nonexistent saltenv '{env_key}' found in include of '{target}' "
                          f"within SLS '{env}:{sls}'")
            return
        if target.startswith("."):
            resolved = _relative(target, sls, relpath)
            if resolved is None:
                errors.append(f"Attempted relative include of '{target}' within SLS "
                              f"'{env}:{sls}' goes beyond top level package ")
                return
            target = resolved
        if env_key == "_xenv":
            envs = [e for e in matches if fnmatch.filter(self.avail(e), target)]
        else:
            envs = [env_key] if env_key in matches or fnmatch.filter(
                self.avail(env_key), target) else []
        if len(envs) != 1 and env not in envs:
            errors.append(f"Unknown include: Specified SLS {env_key}: {target} is not available "
                          f"on the salt master in saltenv(s): {env_key}" if not envs else
                          f"Ambiguous include: Specified SLS {env_key}: {target} is available "
                          f"on the salt master in multiple available saltenvs: {', '.join(envs)}")
            return
        use_env = envs[0] if len(envs) == 1 else env
        for name in fnmatch.filter(self.avail(env), target) or [target]:
            if f"{use_env}:{name}" in mods:
                continue
            nstate, nerrors = self.render_state(name, use_env, mods, matches)
            for key, body in nstate.items():
                if not key.startswith("__") and isinstance(body, dict):
                    body.setdefault("__sls_included_from__", []).append(sls)
            if nstate:
                _merge_included(state, nstate, errors)
            errors += nerrors

    def _handle_iorder(self, state: HighData) -> None:
        for body in state.values():
            if not isinstance(body, dict):
                continue
            for key, run in body.items():
                if key.startswith("_") or not isinstance(run, list):
                    continue
                if not any(isinstance(arg, dict) and arg and next(iter(arg)) == "order"
                           for arg in run):
                    run.append({"order": self.iorder})
                    self.iorder += 1

    def _find(self, sls: str, env: str) -> tuple[str, str] | None:
        for relpath in state_paths(sls):
            path = self.client.cache_file(relpath, env)
            if path is not None:
                return relpath, path.read_text(encoding="utf-8")
        return None

    def _fetcher(self, env: str) -> Any:
        def fetch(name: str) -> str | None:
            path = self.client.cache_file(name, env)
            return path.read_text(encoding="utf-8") if path is not None else None
        return fetch

    def _context(self, env: str, sls: str, relpath: str) -> dict[str, Any]:
        inputs = self.inputs
        opts = {**inputs.opts, "id": inputs.minion_id, "saltenv": env}
        context: dict[str, Any] = {"grains": inputs.grains, "pillar": inputs.pillar,
                                   "opts": opts, "saltenv": env, "sls": sls}
        if inputs.functions is not None:
            context["salt"] = inputs.functions
        context.update(sls_variables(sls, relpath))
        return context


def _missing(pattern: str, env: str) -> str:
    return f"No matching sls found for '{pattern}' in env '{env}'"


def _relative(target: str, sls: str, relpath: str) -> str | None:
    match = re.match(r"^(\.+)(.*)$", target)
    if match is None:
        return None
    levels, rest = match.groups()
    parts = sls.split(".")
    if relpath.endswith("/init.sls"):
        parts.append("init")
    if len(levels) > len(parts):
        return None
    return ".".join(parts[: -len(levels)] + [rest])


def _merge_included(high: HighData, state: HighData, errors: list[str]) -> None:
    if "__extend__" in state:
        high.setdefault("__extend__", []).extend(state.pop("__extend__"))
    if "__exclude__" in state:
        high.setdefault("__exclude__", []).extend(state.pop("__exclude__"))
    for id_, body in state.items():
        if id_ in high and high[id_] != body:
            errors.append("Detected conflicting IDs, SLS IDs need to be globally unique.\n    "
                          f"The conflicting ID is '{id_}' and is found in SLS "
                          f"'{high[id_].get('__env__')}:{high[id_].get('__sls__')}' and SLS "
                          f"'{body.get('__env__')}:{body.get('__sls__')}'")
    high.update(state)


def _handle_extend(state: HighData, sls: str, env: str, errors: list[str]) -> None:
    if "extend" not in state:
        return
    ext = state.pop("extend")
    if not isinstance(ext, dict):
        errors.append(f"Extension value in SLS '{sls}' is not a dictionary")
        return
    for name, body in ext.items():
        if not isinstance(body, dict):
            errors.append(f"Extension name '{name}' in SLS '{sls}' is not a dictionary")
            continue
        body.setdefault("__sls__", sls)
        body.setdefault("__env__", env)
        for key in list(body):
            if not key.startswith("_") and isinstance(body[key], list) and "." in key:
                module, fun = key.split(".", 1)
                body[module] = body.pop(key)
                body[module].append(fun)
    state.setdefault("__extend__", []).append(ext)


def _handle_exclude(state: HighData, sls: str, errors: list[str]) -> None:
    if "exclude" not in state:
        return
    exclude = state.pop("exclude")
    if not isinstance(exclude, list):
        errors.append(f"Exclude Declaration in SLS {sls} is not formed as a list")
        return
    state.setdefault("__exclude__", []).extend(exclude)


def _handle_state_decls(state: HighData, sls: str, env: str, errors: list[str]) -> None:
    for name in list(state):
        body = state[name]
        if not isinstance(body, dict):
            if name in ("__extend__", "__exclude__"):
                continue
            if isinstance(body, str) and "." in body:
                module, fun = body.split(".", 1)
                state[name] = {"__sls__": sls, "__env__": env, module: [fun]}
                continue
            errors.append(f"ID {name} in SLS {sls} is not a dictionary")
            continue
        seen: set[str] = set()
        for key in list(body):
            if str(key).startswith("_") or not isinstance(body[key], list):
                continue
            if "." in key:
                module, fun = key.split(".", 1)
                if module in seen:
                    errors.append(f"ID '{name}' in SLS '{sls}' contains multiple state "
                                  "declarations of the same type")
                    continue
                body[module] = body.pop(key)
                body[module].append(fun)
                seen.add(module)
                continue
            seen.add(key)
        body.setdefault("__sls__", sls)
        body.setdefault("__env__", env)
