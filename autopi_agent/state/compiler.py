"""High data to low chunks: ``extend``, ``*_in`` requisites, ``exclude``, checks, then chunks.

High data is ``{id: {state: [fun, {arg: value}, ...], __sls__, __env__}}`` plus the
``__extend__`` and ``__exclude__`` lists. Every step returns error sentences rather than
raising, so all problems of a tree are reported at once, as Salt does.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable, Mapping
from typing import Any

from autopi_agent.state.ordering import DependencyGraph, RequisiteCycle

__all__ = ["REQUISITES", "UNSUPPORTED", "apply_exclude", "compile_high", "compile_low",
           "order_chunks", "reconcile_extend", "requisite_in", "unsupported", "verify_high"]

HighData = dict[str, Any]
LowChunk = dict[str, Any]

REQUISITES = frozenset({"onfail", "onfail_any", "onfail_all", "require", "require_any",
                        "onchanges", "onchanges_any", "watch", "watch_any", "prereq",
                        "prerequired", "listen", "onfail_stop"})
_REQUISITE_IN = ("require_in", "watch_in", "onfail_in", "onchanges_in", "prereq_in")
# Salt keywords this engine does not implement: refused before a run rather than ignored,
# because ignoring them would change what the states do.
UNSUPPORTED = {"prereq": "prereq", "prereq_in": "prereq", "listen": "listen",
               "listen_in": "listen", "use": "use", "use_in": "use", "retry": "retry"}


def _states(body: Mapping[str, Any]) -> list[str]:
    return [key for key in body if not str(key).startswith("__")]


def _first_key(arg: Mapping[str, Any]) -> Any:
    return next(iter(arg))


def find_name(name: str, state: str, high: HighData, strict: bool = False) -> list[tuple[str, str]]:
    """The (ID, state) pairs ``name`` refers to: an ID, every ID of an SLS, or a ``name`` arg."""
    if name in high and (not strict or state in high.get(name, {})):
        return [(name, state)]
    if state == "sls":
        return [(nid, _states(body)[0]) for nid, body in high.items()
                if isinstance(body, dict) and body.get("__sls__") == name and _states(body)]
    found = []
    for nid, body in high.items():
        if not isinstance(body, dict) or not isinstance(body.get(state), list):
            continue
        for arg in body[state]:
            if isinstance(arg, dict) and len(arg) == 1 and arg[_first_key(arg)] == name:
                found.append((nid, state))
    return found


def reconcile_extend(high: HighData, strict: bool = False) -> tuple[HighData, list[str]]:
    """Apply ``__extend__`` to the states it names (requisite lists grow, other args replace)."""
    errors: list[str] = []
    excluded = {entry if isinstance(entry, str) else entry.get("sls")
                for entry in high.get("__exclude__", []) if isinstance(entry, (str, dict))}
    for ext_chunk in high.pop("__extend__", []):
        for name, body in ext_chunk.items():
            state_type = next((key for key in body if not key.startswith("__")), None)
            if state_type is None:
                continue
            if name not in high or state_type not in high[name]:
                ids = find_name(name, state_type, high, strict=strict)
                if len(ids) != 1:
                    errors.append(_cannot_extend(name, body))
                    continue
                name = ids[0][0]
            if body.get("__sls__") in excluded:
                continue
            for state, run in body.items():
                if not state.startswith("__"):
                    _extend_state(high[name], state, run)
    return high, errors


def _cannot_extend(name: str, body: Mapping[str, Any]) -> str:
    env, sls = body.get("__env__", "base"), body.get("__sls__", "base")
    return (f"Cannot extend ID '{name}' in '{env}:{sls}'. It is not part of the high state.\n"
            "This is likely due to a missing include statement or an incorrectly typed ID.\n"
            f"Ensure that a state with an ID of '{name}' is available\nin environment "
            f"'{env}' and to SLS '{sls}'")


def _extend_state(target: dict[str, Any], state: str, run: list[Any]) -> None:
    if state not in target:
        target[state] = run
        return
    current = target[state]
    for arg in run:
        updated = False
        for index, value in enumerate(current):
            if isinstance(arg, str) and isinstance(value, str):
                current[index] = arg  # a new function replaces the old one
                updated = True
            elif isinstance(arg, dict) and isinstance(value, dict) and arg and value:
                key = _first_key(arg)
                if key == _first_key(value):
                    if key in REQUISITES:
                        value[key].extend(arg[key])
                    else:
                        current[index] = arg
                    updated = True
                if key == "name" and _first_key(current[index]) == "names":
                    current[index] = arg
        if not updated:
            current.append(arg)


def apply_exclude(high: HighData) -> HighData:
    """Drop the IDs and SLS (globs allowed) listed in ``__exclude__``."""
    ex_sls: set[str] = set()
    ex_id: set[str] = set()
    for entry in high.pop("__exclude__", []):
        if isinstance(entry, str):
            ex_sls.add(entry)
        elif isinstance(entry, dict) and len(entry) == 1:
            key = _first_key(entry)
            (ex_sls if key == "sls" else ex_id if key == "id" else set()).add(entry[key])
    for name, body in list(high.items()):
        sls = body.get("__sls__", "") if isinstance(body, dict) else ""
        if sls and any(fnmatch.fnmatch(sls, pattern) for pattern in ex_sls):
            ex_id.add(name)
    for name in ex_id:
        high.pop(name, None)
    return high


def verify_high(high: Any) -> list[str]:
    """Salt's structural checks of high data; each problem as a sentence naming ID and SLS."""
    if not isinstance(high, dict):
        return ["High data is not a dictionary and is invalid"]
    errors: list[str] = []
    for id_, body in high.items():
        if isinstance(id_, str) and id_.startswith("__"):
            continue
        if not isinstance(body, dict):
            errors.append(f"The type {id_} in {body} is not formatted as a dictionary")
            continue
        sls = body.get("__sls__")
        if not isinstance(id_, str):
            errors.append(f"ID '{id_}' in SLS '{sls}' is not formed as a string, but is type "
                          f"{type(id_).__name__}. It may need to be quoted.")
        for state in _states(body):
            errors += _verify_state(id_, sls, state, body[state])
    return errors


def _verify_state(id_: Any, sls: Any, state: str, run: Any) -> list[str]:
    if run is None:
        return [f"ID '{id_}' in SLS '{sls}' contains a short declaration ({state}) with a "
                "trailing colon. When not passing any arguments to a state, the colon must "
                "be omitted."]
    if not isinstance(run, list):
        return [f"State '{id_}' in SLS '{sls}' is not formed as a list"]
    errors: list[str] = []
    funs = [arg for arg in run if isinstance(arg, str)]
    for fun in funs:
        if " " in fun.strip():
            errors.append(f'The function "{fun}" in state "{id_}" in SLS "{sls}" has whitespace, '
                          "a function with whitespace is not supported, perhaps this is an "
                          'argument that is missing a ":"')
    for arg in run:
        if isinstance(arg, dict) and arg:
            errors += _verify_arg(id_, sls, arg)
    if not funs:
        errors.append(f"No function declared in state '{id_}' in SLS '{sls}'")
    elif len(funs) > 1:
        errors.append(f"Too many functions declared in state '{id_}' in SLS '{sls}'. Please "
                      f"choose one of the following: {', '.join(funs)}")
    return errors


def _verify_arg(id_: Any, sls: Any, arg: Mapping[str, Any]) -> list[str]:
    key = _first_key(arg)
    errors: list[str] = []
    if key == "names" and not isinstance(arg[key], list):
        errors.append(f"The 'names' argument in state '{id_}' in SLS '{sls}' needs to be "
                      "formed as a list")
    if key in REQUISITES:
        if not isinstance(arg[key], list):
            errors.append(f"The {key} statement in state '{id_}' in SLS '{sls}' needs to be "
                          "formed as a list")
        else:
            for req in arg[key]:
                req = {"id": req} if isinstance(req, str) else req
                if not isinstance(req, dict) or len(req) != 1:
                    errors.append(f"Requisite declaration {req} in state {id_} in SLS {sls} "
                                  "is not formed as a single key dictionary")
                    continue
                req_key = str(_first_key(req))
                if "." in req_key:
                    errors.append(f"Invalid requisite type '{req_key}' in state '{id_}', in SLS "
                                  f"'{sls}'. Requisite types must not contain dots, did you "
                                  f"mean '{req_key.split('.')[0]}'?")
        if len(arg) != 1:
            errors.append(f"Multiple dictionaries defined in argument of state '{id_}' in SLS "
                          f"'{sls}'")
    return errors


def requisite_in(high: HighData) -> tuple[HighData, list[str]]:
    """Turn ``require_in``/``watch_in``/``onfail_in``/``onchanges_in`` into requisites of the
    states they name, then apply them as extensions."""
    extend: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    for id_, body in high.items():
        if not isinstance(body, dict):
            continue
        for state in _states(body):
            for arg in body[state] if isinstance(body[state], list) else []:
                if isinstance(arg, dict) and arg and _first_key(arg) in _REQUISITE_IN:
                    key = _first_key(arg)
                    _one_requisite_in(high, extend, errors, id_, state, body, key, arg[key])
    high["__extend__"] = [{name: value} for name, value in extend.items()]
    high, extend_errors = reconcile_extend(high, strict=True)
    return high, errors + extend_errors


def _one_requisite_in(high: HighData, extend: dict[str, dict[str, Any]], errors: list[str],
                      id_: str, state: str, body: Mapping[str, Any], key: str, items: Any) -> None:
    kind = key.split("_")[0]
    add = _adder(extend, body, kind, state, id_)
    if isinstance(items, dict):
        for target_state, name in items.items():
            if "." in target_state:
                errors.append(_dotted(kind, target_state, name, body))
                target_state = target_state.split(".")[0]
            add(name, target_state)
        return
    if not isinstance(items, list):
        return
    hinges: list[tuple[str, str]] = []
    for item in items:
        ref = _requisite_ref(high, item)
        if ref is None:
            continue
        target_state, name = next(iter(ref.items()))
        if target_state == "sls":
            hinges = [(nid, st) for nid, b in high.items() if isinstance(b, dict)
                      and b.get("__sls__") == name for st in _states(b)]
        else:
            hinges.append((name, target_state))
        if "." in target_state:
            errors.append(_dotted(kind, target_state, name, body))
        # As Salt 3008: the hinges of earlier items are added again for each later item,
        # so a state named first may get the same requisite twice (harmless, and kept so
        # show_lowstate matches Salt's).
        for hinge_name, hinge_state in hinges:
            add(hinge_name, hinge_state)


def _adder(extend: dict[str, dict[str, Any]], body: Mapping[str, Any], kind: str,
           state: str, id_: str) -> Callable[[str, str], None]:
    def add(name: str, target_state: str) -> None:
        entry = extend.setdefault(name, {})
        run = entry.setdefault(target_state, [])
        entry["__env__"] = body.get("__env__")
        entry["__sls__"] = body.get("__sls__")
        for existing in run:
            if _first_key(existing) == kind:
                existing[kind].append({state: id_})
                return
        run.append({kind: [{state: id_}]})
    return add


def _requisite_ref(high: HighData, item: Any) -> dict[str, Any] | None:
    if isinstance(item, dict):
        return item or None
    if item in high and isinstance(high[item], dict) and _states(high[item]):
        return {_states(high[item])[0]: item}
    for nid, body in high.items():
        for state in (_states(body) if isinstance(body, dict) else []):
            for arg in body[state] if isinstance(body[state], list) else []:
                if isinstance(arg, dict) and arg.get("name") == item:
                    return {state: nid}
    return None


def _dotted(kind: str, state: str, name: Any, body: Mapping[str, Any]) -> str:
    return (f"Invalid requisite in {kind}: {state} for {name}, in SLS '{body.get('__sls__')}'. "
            f"Requisites must not contain dots, did you mean '{state.split('.')[0]}'?")


def unsupported(high: HighData) -> list[str]:
    """A sentence for each use of a keyword this engine cannot honour (see UNSUPPORTED)."""
    errors = []
    for id_, body in high.items():
        if str(id_).startswith("__") or not isinstance(body, dict):
            continue
        for state in _states(body):
            for arg in body[state] if isinstance(body[state], list) else []:
                if isinstance(arg, dict) and arg and _first_key(arg) in UNSUPPORTED:
                    errors.append(f"The {UNSUPPORTED[_first_key(arg)]} requisite/option "
                                  f"('{_first_key(arg)}') in state '{id_}' in SLS "
                                  f"'{body.get('__sls__')}' is not supported by this agent; "
                                  "use require, watch, onchanges or onfail instead")
    return errors


def compile_high(high: HighData) -> list[LowChunk]:
    """The low chunks of ``high``, unordered: one per ID, state and name (``names`` expand)."""
    chunks: list[LowChunk] = []
    for id_, body in high.items():
        if id_.startswith("__") or not isinstance(body, dict):
            continue
        for state in _states(body):
            chunks += _chunks_of(id_, body, state)
    return chunks


def _chunks_of(id_: str, body: Mapping[str, Any], state: str) -> list[LowChunk]:
    chunk: LowChunk = {"state": state, "name": id_}
    for key in ("__sls__", "__env__", "__sls_included_from__"):
        if key in body:
            chunk[key] = body[key]
    chunk["__id__"] = id_
    funs: list[str] = []
    names: list[Any] = []
    for arg in body[state]:
        if isinstance(arg, str):
            funs.append(arg)
        elif isinstance(arg, dict):
            for key, value in arg.items():
                if key == "names":
                    names += [name for name in value if name not in names]
                elif key == "state":
                    continue  # a state override is never passed down
                elif key == "name" and not isinstance(value, str):
                    chunk[key] = id_
                else:
                    chunk[key] = value
    if not funs:
        return []
    if not names:
        return [{**copy.deepcopy(chunk), "fun": funs[0]}]
    out = []
    for number, entry in enumerate(names, start=1):
        live = copy.deepcopy(chunk)
        if isinstance(entry, dict):
            live["name"] = _first_key(entry)
            for extra in entry[live["name"]] or []:
                live.update(extra)
        else:
            live["name"] = entry
        live["name_order"] = number
        live["fun"] = funs[0]
        out.append(live)
    return out


def order_chunks(chunks: list[LowChunk],
                 has_mod_watch: Callable[[str], bool]) -> tuple[list[LowChunk], list[str], DependencyGraph]:
    """Sort ``chunks`` by order and requisites; ``watch`` becomes ``require`` for a state
    module without ``mod_watch``. Returns (chunks, errors, graph)."""
    graph = DependencyGraph()
    for chunk in chunks:
        graph.add_chunk(chunk)
    cap = 1
    errors: list[str] = []
    for chunk in chunks:
        for watch, require in (("watch", "require"), ("watch_any", "require_any")):
            if watch in chunk and not has_mod_watch(chunk["state"]):
                chunk.setdefault(require, []).extend(chunk.pop(watch))
        error = graph.add_requisites(chunk)
        if error:
            errors.append(error)
        elif isinstance(chunk.get("order"), int) and chunk["order"] > max(cap - 1, 0):
            cap = chunk["order"] + 100
    try:
        ordered = graph.ordered(cap)
    except RequisiteCycle as err:
        return [], [*errors, str(err)], graph
    return ordered, errors, graph


def compile_low(high: HighData, has_mod_watch: Callable[[str], bool]
                ) -> tuple[list[LowChunk], list[str], DependencyGraph | None]:
    """Everything from rendered high data to ordered chunks: (chunks, errors, graph)."""
    high, errors = reconcile_extend(high)
    errors += verify_high(high)
    high, in_errors = requisite_in(high)
    errors += in_errors
    high = apply_exclude(high)
    if errors:
        return [], errors, None
    chunks, errors, graph = order_chunks(compile_high(high), has_mod_watch)
    return chunks, errors, graph
