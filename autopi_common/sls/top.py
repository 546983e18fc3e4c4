"""Top files: merge the ``top.sls`` of each environment and find what applies to one minion.

Salt's default ``top_file_merging_strategy: merge``: the base top file is authoritative,
and another environment's top file only adds its own environment's section when base did
not define it. A target is matched as a compound expression unless the list holds
``- match: <type>`` (glob, pcre, list, grain, grain_pcre, ipcidr, compound, pillar,
pillar_pcre), as in Salt's ``confirm_top``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from autopi_common.sls import TopError
from autopi_proto import targeting
from autopi_proto.grainmatch import subdict_match

__all__ = ["confirm_target", "merge_tops", "top_matches", "verify_top"]

TopData = dict[str, dict[Any, Any]]


def merge_tops(tops: Mapping[str, Sequence[Any]]) -> TopData:
    """One top from the rendered top files of each environment (``{env: [top, ...]}``).

    Raises TopError when a top file is not a mapping of environments to targets.
    """
    merged: TopData = {}
    for ctop in tops.get("base", []):
        for env, targets in _sections(ctop, "base"):
            for tgt, data in _targets(targets, env):
                merged.setdefault(env, {})[tgt] = data
    for cenv, ctops in tops.items():
        if cenv == "base":
            continue
        for ctop in ctops:
            for env, targets in _sections(ctop, cenv):
                if env != cenv or env in merged:
                    continue  # another env's section, or one base already defined
                for tgt, data in _targets(targets, env):
                    merged.setdefault(env, {})[tgt] = data
    return merged


def _sections(ctop: Any, cenv: str) -> list[tuple[str, Any]]:
    if not ctop:
        return []
    if not isinstance(ctop, Mapping):
        raise TopError(f"the top file of saltenv {cenv!r} is not a mapping of environments")
    return [(str(env), targets) for env, targets in ctop.items() if env != "include"]


def _targets(targets: Any, env: str) -> list[tuple[Any, Any]]:
    if not isinstance(targets, Mapping):
        raise TopError(f"unable to render top file: saltenv {env!r} has no targets "
                       "(expected a mapping of target to a list of SLS names)")
    return list(targets.items())


def verify_top(top: Mapping[str, Any]) -> list[str]:
    """Salt's structural checks of a merged top; each problem as a sentence."""
    errors: list[str] = []
    for env, matches in top.items():
        if env == "":
            errors.append("Empty saltenv statement in top file")
        if not isinstance(matches, Mapping):
            errors.append(f"The top file matches for saltenv {env} are not formatted as a dict")
            continue
        for match, slsmods in matches.items():
            if not isinstance(slsmods, list):
                errors.append(f"Malformed topfile: state declarations for matcher {match!r} in "
                              f"saltenv {env!r} are not formed as a list "
                              f"(got {type(slsmods).__name__})")
                continue
            for slsmod in slsmods:
                if isinstance(slsmod, Mapping) and not all(slsmod.values()):
                    errors.append(f"Improperly formatted top file matcher in saltenv {env}: "
                                  f"{slsmod} file")
                elif isinstance(slsmod, str) and not slsmod:
                    errors.append(f"Environment {env} contains an empty sls index")
    return errors


def top_matches(top: Mapping[str, Any], minion_id: str, grains: Mapping[str, Any],
                pillar: Mapping[str, Any] | None = None, *, saltenv: str | None = None,
                envs: Collection[str] | None = None) -> dict[str, list[str]]:
    """``{env: [sls, ...]}`` for this minion, in top-file order (as Salt's ``show_top``).

    ``saltenv`` keeps only that environment's section; ``envs`` are the environments that
    exist (a ``- otherenv: sls`` entry naming any other is skipped).
    """
    matches: dict[str, list[str]] = {}
    for env, body in top.items():
        if saltenv and env != saltenv:
            continue
        if not isinstance(body, Mapping):
            continue
        for tgt, data in body.items():
            items = [data] if isinstance(data, str) else list(data or [])
            if not confirm_target(str(tgt), items, minion_id, grains, pillar or {}):
                continue
            found = matches.setdefault(env, [])
            for item in items:
                if isinstance(item, str):
                    found.append(item)
                elif isinstance(item, Mapping):
                    for key, sls in item.items():
                        if key == "match" or (envs is not None and key not in envs):
                            continue
                        matches.setdefault(str(key), []).append(str(sls))
    return matches


def confirm_target(tgt: str, items: Sequence[Any], minion_id: str, grains: Mapping[str, Any],
                   pillar: Mapping[str, Any]) -> bool:
    """Does the top-file target ``tgt`` (with its ``- match:`` option in ``items``) select us?"""
    matcher = "compound"
    for item in items:
        if isinstance(item, Mapping) and "match" in item:
            matcher = str(item["match"])
    if matcher in ("pillar", "pillar_pcre"):
        return subdict_match(pillar, tgt, regex=matcher == "pillar_pcre")
    if matcher not in targeting.TARGET_TYPES:
        return False
    return targeting.matches(tgt, matcher, minion_id, grains)
