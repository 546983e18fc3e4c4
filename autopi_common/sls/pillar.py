"""Pillar: render ``pillar_roots`` for one minion (its top matches, includes, recursive merge).

As Salt's ``salt/pillar``: each environment's ``top.sls`` says which pillar SLS a minion
gets; every SLS renders to a mapping, merged recursively in top-file order (later wins,
lists replaced). An ``include`` may take ``defaults`` (extra template variables) and
``key`` (nest the included data under ``a:b``). Problems do not raise: they are listed
under the pillar key ``_errors``, which stops state runs, as in Salt.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable, Mapping
from typing import Any

from autopi_common.sls import RenderError, SlsError
from autopi_common.sls.jinja import SaltFunctions
from autopi_common.sls.render import DEFAULT_PIPE, render_sls, sls_variables
from autopi_common.sls.roots import FileRoots
from autopi_common.sls.top import merge_tops, top_matches, verify_top
from autopi_proto.grainmatch import traverse

__all__ = ["PillarRenderer", "grains_functions", "merge_recursive"]

ERRORS_KEY = "_errors"


def merge_recursive(dest: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` merged into a copy of ``dest``: mappings recursively, anything else replaced."""
    merged = copy.deepcopy(dest)
    for key, value in update.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            merged[key] = merge_recursive(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def grains_functions(grains: Mapping[str, Any],
                     pillar: Callable[[], Mapping[str, Any]] = dict) -> SaltFunctions:
    """A ``salt`` object offering ``grains.get``/``grains.item``/``pillar.get`` over fixed data,
    for rendering where no execution modules run (the master rendering pillar)."""
    def grains_get(key: str, default: Any = "", delimiter: str = ":") -> Any:
        return traverse(grains, key, default, delimiter)

    def grains_item(*keys: str) -> dict[str, Any]:
        return {key: traverse(grains, key, "") for key in keys}

    def pillar_get(key: str, default: Any = "", delimiter: str = ":") -> Any:
        return traverse(pillar(), key, default, delimiter)

    table: dict[str, Callable[..., Any]] = {"grains.get": grains_get, "grains.item": grains_item,
                                            "pillar.get": pillar_get}
    return SaltFunctions(table.__getitem__, table.keys)


class PillarRenderer:
    """Compiles the pillar of any minion from one set of ``pillar_roots``."""

    def __init__(self, roots: FileRoots, *, renderer: str = DEFAULT_PIPE,
                 opts: Mapping[str, Any] | None = None) -> None:
        self.roots = roots
        self.renderer = renderer
        self.opts = dict(opts or {})

    def compile(self, minion_id: str, grains: Mapping[str, Any], *,
                pillarenv: str | None = None, functions: SaltFunctions | None = None,
                override: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The pillar of ``minion_id`` with ``grains``; ``_errors`` lists what went wrong."""
        run = _Run(self, minion_id, grains, functions)
        pillar: dict[str, Any] = {}
        try:
            matches = self.matches(minion_id, grains, pillarenv=pillarenv, run=run)
        except SlsError as err:
            run.errors.append(str(err))
            matches = {}
        for env, patterns in matches.items():
            mods: dict[str, Any] = {}
            for sls in self._expand(env, patterns):
                data = run.render(sls, env, mods, {})
                if isinstance(data, dict):
                    pillar = merge_recursive(pillar, data)
                    run.pillar = pillar
        if override:
            pillar = merge_recursive(pillar, override)
        if run.errors:
            pillar[ERRORS_KEY] = run.errors
        return pillar

    def matches(self, minion_id: str, grains: Mapping[str, Any], *,
                pillarenv: str | None = None, run: _Run | None = None) -> dict[str, list[str]]:
        """The pillar top's ``{env: [sls, ...]}`` for this minion."""
        run = run or _Run(self, minion_id, grains, None)
        tops: dict[str, list[Any]] = {}
        for env in self.roots.envs():
            if pillarenv and env != pillarenv:
                continue
            text = self.roots.read_text(env, "top.sls")
            if text is not None:
                tops[env] = [render_sls(text, source=f"{env}:top.sls (pillar)",
                                        context=run.context(env, "", "top.sls"),
                                        fetch=run.fetcher(env), default=self.renderer)]
        top = merge_tops(tops)
        run.errors.extend(verify_top(top))
        return top_matches(top, minion_id, grains, {}, saltenv=pillarenv, envs=self.roots.envs())

    def _expand(self, env: str, patterns: list[str]) -> list[str]:
        available = self.roots.list_states(env)
        found: list[str] = []
        for pattern in patterns:
            found.extend(fnmatch.filter(available, pattern) or [pattern])
        return found


class _Run:
    """One compile: the minion's data, the pillar so far and the errors met."""

    def __init__(self, renderer: PillarRenderer, minion_id: str, grains: Mapping[str, Any],
                 functions: SaltFunctions | None) -> None:
        self.renderer = renderer
        self.minion_id = minion_id
        self.grains = grains
        self.pillar: dict[str, Any] = {}
        self.functions = functions or grains_functions(grains, lambda: self.pillar)
        self.errors: list[str] = []

    def context(self, env: str, sls: str, relpath: str,
                defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
        opts = {**self.renderer.opts, "id": self.minion_id, "saltenv": env}
        context = {"grains": self.grains, "pillar": self.pillar, "opts": opts,
                   "salt": self.functions, "saltenv": env, "sls": sls,
                   **sls_variables(sls, relpath)}
        context.update(defaults or {})
        return context

    def fetcher(self, env: str) -> Callable[[str], str | None]:
        return lambda name: self.renderer.roots.read_text(env, name)

    def render(self, sls: str, env: str, mods: dict[str, Any],
               defaults: Mapping[str, Any]) -> Any:
        relpath, text = _find(self.renderer.roots, env, sls)
        if text is None:
            self.errors.append(f"Specified SLS '{sls}' in environment '{env}' is not "
                               "available on the salt master")
            return None
        try:
            data = render_sls(text, source=f"{env}:{relpath} (pillar)",
                              context=self.context(env, sls, relpath, defaults),
                              fetch=self.fetcher(env), default=self.renderer.renderer)
        except RenderError as err:
            self.errors.append(f"Rendering SLS '{sls}' failed, render error:\n{err}")
            data = None
        mods[sls] = data
        if not data:
            return None
        if not isinstance(data, dict):
            self.errors.append(f"SLS '{sls}' does not render to a dictionary")
            return None
        return self._with_includes(sls, relpath, env, data, mods)

    def _with_includes(self, sls: str, relpath: str, env: str, data: dict[str, Any],
                       mods: dict[str, Any]) -> dict[str, Any]:
        includes = data.pop("include", [])
        if not isinstance(includes, list):
            self.errors.append(f"Include Declaration in SLS '{sls}' is not formed as a list")
            return data
        merged: dict[str, Any] = {}
        for entry in includes:
            target, defaults, key = _include_options(entry)
            for name in self._resolve(sls, relpath, env, target):
                included = mods[name] if name in mods else self.render(name, env, mods, defaults)
                if isinstance(included, dict) and included:
                    for part in reversed(key.split(":") if key else []):
                        included = {part: included}
                    merged = merge_recursive(merged, included)
        # The including file is merged last so its values win.
        return merge_recursive(merged, data)

    def _resolve(self, sls: str, relpath: str, env: str, target: str) -> list[str]:
        if target.startswith("."):
            parts = sls.split(".") if relpath.endswith("/init.sls") else sls.split(".")[:-1]
            target = ".".join([*parts, target[1:]])
        available = self.renderer.roots.list_states(env)
        return fnmatch.filter(available, target) or [target]


def _include_options(entry: Any) -> tuple[str, Mapping[str, Any], str | None]:
    if isinstance(entry, Mapping):
        target, options = next(iter(entry.items()))
        options = options if isinstance(options, Mapping) else {}
        return str(target), options.get("defaults") or {}, options.get("key")
    return str(entry), {}, None


def _find(roots: FileRoots, env: str, sls: str) -> tuple[str, str | None]:
    base = sls.replace(".", "/")
    for relpath in (f"{base}.sls", f"{base}/init.sls"):
        text = roots.read_text(env, relpath)
        if text is not None:
            return relpath, text
    return f"{base}.sls", None
