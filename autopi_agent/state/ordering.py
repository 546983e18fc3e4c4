"""Requisites as a dependency graph, and the order low chunks run in, as Salt 3008 decides it.

Every chunk is a node; a requisite is an edge from the required chunk to the chunk that
requires it, labelled with the requisite kind. The run order is a topological sort that,
among the chunks ready to run, takes the one with the smallest key: its ``order`` (pulled
forward to the order of a chunk that depends on it), then its own order, then
``state + name + fun``. ``order: first`` is 0, ``last`` is past every number, a missing
order is ``cap`` (100 more than the largest number seen), and ``names`` entries add
1/10000 each so they keep their written order.
"""

from __future__ import annotations

import fnmatch
import heapq
import math
from collections.abc import Iterator, Mapping
from typing import Any

from autopi_agent.state import StateError

__all__ = ["REQUISITE_WEIGHTS", "DependencyGraph", "RequisiteCycle", "low_tag", "trim_req"]

LowChunk = dict[str, Any]

# Precedence of the requisite kinds when a required chunk inherits a dependant's order.
REQUISITE_WEIGHTS: Mapping[str, int] = {
    name: weight for weight, name in enumerate((
        "onfail", "onfail_any", "onfail_all", "require", "require_any", "onchanges",
        "onchanges_any", "watch", "watch_any", "prereq", "prerequired", "listen"))
}
# The order in which a chunk's requisites are read (it decides edge order, hence ties).
_READ_ORDER = ("require", "require_any", "watch", "watch_any", "prereq", "onfail",
               "onfail_any", "onfail_all", "onchanges", "onchanges_any")
_LAST = 1000000


class RequisiteCycle(StateError):
    """The requisites form a loop, so no order can satisfy them."""


def low_tag(low: Mapping[str, Any]) -> str:
    """The key of a chunk's result: ``state_|-id_|-name_|-fun``."""
    return f"{low['state']}_|-{low['__id__']}_|-{low['name']}_|-{low['fun']}"


def trim_req(req: Mapping[str, Any]) -> tuple[str, Any]:
    """A requisite reference as (kind of target, value): ``file.managed: x`` is ``file``."""
    key, value = next(iter(req.items()))
    return str(key).split(".", 1)[0], value


def _is_pattern(value: str) -> bool:
    return any(char in value for char in "*?[]")


class DependencyGraph:
    """The chunks of one run and the requisite edges between them."""

    def __init__(self) -> None:
        self.chunks: dict[str, LowChunk] = {}
        self._out: dict[str, dict[str, dict[str, None]]] = {}
        self._in: dict[str, dict[str, dict[str, None]]] = {}
        self._lookup: dict[tuple[str, str], dict[str, None]] = {}
        self._by_sls: dict[str, dict[str, None]] = {}

    def add_chunk(self, low: LowChunk) -> None:
        """Add a chunk as a node, findable by state+name, state+ID, ID and name."""
        tag = low_tag(low)
        self.chunks[tag] = low
        self._out.setdefault(tag, {})
        self._in.setdefault(tag, {})
        for key in ((low["state"], low["name"]), (low["state"], low["__id__"]),
                    ("id", low["__id__"]), ("id", low["name"])):
            self._lookup.setdefault((str(key[0]), str(key[1])), {})[tag] = None
        for sls in [low.get("__sls__"), *low.get("__sls_included_from__", [])]:
            if sls:
                self._by_sls.setdefault(sls, {})[tag] = None

    def add_requisites(self, low: LowChunk) -> str | None:
        """Add the edges of ``low``'s requisites; an error sentence if one cannot be met."""
        for kind in _READ_ORDER:
            for ref in low.get(kind) or []:
                ref = {"id": ref} if isinstance(ref, str) else ref
                if not isinstance(ref, Mapping) or not ref:
                    continue
                target_kind, value = trim_req(ref)
                if value is None:
                    continue
                if not isinstance(value, str):
                    return (f"Requisite [{kind}: {target_kind}] in state [{low['name']}] in SLS "
                            f"[{low.get('__sls__')}] must have a string as the value")
                if not self._add_dependency(low, kind, target_kind, value):
                    return (f"Referenced state does not exist for requisite [{kind}: "
                            f"({target_kind}: {value})] in state [{low['name']}] in SLS "
                            f"[{low.get('__sls__')}]")
        return None

    def _add_dependency(self, low: LowChunk, kind: str, target_kind: str, value: str) -> bool:
        tag = low_tag(low)
        if target_kind == "sls":
            if _is_pattern(value):
                for sls, tags in self._by_sls.items():
                    if fnmatch.fnmatch(sls, value):
                        self._edges(tags, tag, kind)
                return True  # as Salt: a pattern that matches nothing is not an error
            return self._edges(self._by_sls.get(value, {}), tag, kind)
        if _is_pattern(value):
            found = False
            for (state, name_or_id), tags in self._lookup.items():
                if state == target_kind and fnmatch.fnmatch(name_or_id, value):
                    found = self._edges(tags, tag, kind) or found
            return found
        return self._edges(self._lookup.get((target_kind, value), {}), tag, kind)

    def _edges(self, sources: Mapping[str, None], target: str, kind: str) -> bool:
        for source in list(sources):
            self._out[source].setdefault(target, {})[kind] = None
            self._in[target].setdefault(source, {})[kind] = None
        return bool(sources)

    def dependencies(self, low: Mapping[str, Any]) -> Iterator[tuple[str, LowChunk]]:
        """(requisite kind, required chunk) for every requisite edge into ``low``."""
        for source, kinds in self._in.get(low_tag(low), {}).items():
            for kind in kinds:
                yield kind, self.chunks[source]

    def ordered(self, cap: int) -> list[LowChunk]:
        """The chunks in run order; raises RequisiteCycle when requisites loop."""
        waiting = {tag: sum(len(kinds) for kinds in self._in[tag].values()) for tag in self.chunks}
        heap: list[tuple[tuple[tuple[float, float], str], str]] = []
        for tag, count in waiting.items():
            if count == 0:
                heapq.heappush(heap, (self._sort_key(tag, cap), tag))
        ordered: list[LowChunk] = []
        while heap:
            _, tag = heapq.heappop(heap)
            ordered.append(self.chunks[tag])
            for target, kinds in self._out[tag].items():
                waiting[target] -= len(kinds)
                if waiting[target] == 0:
                    heapq.heappush(heap, (self._sort_key(target, cap), target))
        if len(ordered) != len(self.chunks):
            raise RequisiteCycle(f"Recursive requisites were found: {self._describe_cycle()}")
        return ordered

    def _sort_key(self, tag: str, cap: int) -> tuple[tuple[float, float], str]:
        chunk = self.chunks[tag]
        own = _own_order(chunk, cap)
        inherited = math.inf
        heaviest = -math.inf
        for target, kinds in self._out[tag].items():
            for kind in kinds:
                # As Salt: only dependants reached through the heaviest kind so far count.
                if heaviest <= REQUISITE_WEIGHTS[kind]:
                    heaviest = REQUISITE_WEIGHTS[kind]
                    inherited = min(inherited, _peer_order(self.chunks[target], cap))
        label = f"{chunk['state']}{chunk['name']}{chunk['fun']}"
        return (min(own, inherited), chunk["order"]), label

    def _describe_cycle(self) -> str:
        path = self._find_cycle()
        parts = []
        for source, target in zip(path, path[1:], strict=False):
            kind = next(iter(self._out[source][target]))
            parts.append(f"({_describe(self.chunks[target])}, '{kind}', "
                         f"{_describe(self.chunks[source])})")
        return ", ".join(parts)

    def _find_cycle(self) -> list[str]:
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(tag: str) -> list[str] | None:
            state[tag] = 1
            stack.append(tag)
            for target in self._out[tag]:
                if state.get(target) == 1:
                    return stack[stack.index(target):] + [target]
                if target not in state and (found := visit(target)):
                    return found
            stack.pop()
            state[tag] = 2
            return None

        for tag in self.chunks:
            if tag not in state and (found := visit(tag)):
                return found
        return []


def _normal_order(value: Any, cap: int) -> float:
    if isinstance(value, (int, float)):
        return value
    if value == "last":
        return cap + _LAST
    if value == "first":
        return 0
    return cap


def _own_order(chunk: LowChunk, cap: int) -> float:
    order = _normal_order(chunk.get("order"), cap)
    name_order = chunk.pop("name_order", 0)
    if name_order:
        order += name_order / 10000.0
    if order < 0:
        order += cap + _LAST
    chunk["order"] = order
    return order


def _peer_order(chunk: LowChunk, cap: int) -> float:
    if "order" not in chunk:
        return math.inf
    order = _normal_order(chunk["order"], cap)
    chunk["order"] = order
    return order


def _describe(chunk: Mapping[str, Any]) -> str:
    node = {"SLS": chunk.get("__sls__"), "ID": chunk["__id__"]}
    if chunk["__id__"] != chunk["name"]:
        node["NAME"] = chunk["name"]
    return str(node)
