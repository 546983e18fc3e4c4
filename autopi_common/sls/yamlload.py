"""YAML as Salt reads SLS: ordered maps, duplicate IDs refused, ``0644`` read as 644, dates as text."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode

from autopi_common.sls import RenderError

__all__ = ["load_yaml"]

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SlsLoader(_BaseLoader):  # type: ignore[misc]
    """SafeLoader with Salt's SLS twists (salt/utils/yamlloader.py behaviour)."""

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):
            raise ConstructorError(None, None, f"expected a mapping node, but found {node.id}",
                                   node.start_mark)
        self.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise ConstructorError("while constructing a mapping", node.start_mark,
                                       f"found unacceptable key {key_node.value}",
                                       key_node.start_mark) from None
            if key in mapping:
                # Two states with one ID would silently shadow each other.
                raise ConstructorError("while constructing a mapping", node.start_mark,
                                       f"found conflicting ID '{key}'", key_node.start_mark)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_yaml_int_salt(self, node: ScalarNode) -> int:
        # Salt strips leading zeros, so "mode: 0644" is the integer 644 (read as octal
        # digits later by the file states), not YAML 1.1's octal 420.
        text = node.value
        if text.startswith("0") and text != "0" and not text.startswith(("0b", "0x")):
            node = ScalarNode(node.tag, text.lstrip("0") or "0", node.start_mark, node.end_mark)
        return int(self.construct_yaml_int(node))

    def construct_timestamp_text(self, node: ScalarNode) -> str:
        return str(self.construct_scalar(node))


SlsLoader.add_constructor("tag:yaml.org,2002:int", SlsLoader.construct_yaml_int_salt)
SlsLoader.add_constructor("tag:yaml.org,2002:timestamp", SlsLoader.construct_timestamp_text)
SlsLoader.add_constructor("tag:yaml.org,2002:map", SlsLoader.construct_yaml_map)



def load_yaml(text: str, source: str) -> Any:
    """``text`` read as one YAML document; empty text is ``{}``.

    Raises RenderError naming ``source`` and the line (of ``text``) where YAML gave up.
    """
    try:
        data = yaml.load(text, Loader=SlsLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = _problem(str(err.problem), text, line)
        raise RenderError(source, f"YAML error: {problem}", line, _excerpt(text, line)) from err
    except yaml.YAMLError as err:
        raise RenderError(source, f"YAML error: {err}") from err
    if not data:
        return {}
    _check_keys(data, source)
    return data


def _problem(problem: str, text: str, line: int | None) -> str:
    # The C and Python scanners word a tab differently; say it plainly either way.
    lines = text.splitlines()
    if ("cannot start any token" in problem and line and line <= len(lines)
            and "\t" in lines[line - 1]):
        return "Illegal tab character"
    return problem


def _check_keys(data: Any, source: str) -> None:
    # "{{ x }}" left unrendered reads as a mapping used as a key.
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, (dict, list, tuple)):
                raise RenderError(source, "invalid YAML, possible double curly-brace")
            _check_keys(value, source)
    elif isinstance(data, list):
        for item in data:
            _check_keys(item, source)


def _excerpt(text: str, line: int | None, around: int = 2) -> str:
    """The lines around ``line`` (1-based), the bad one marked, for an error message."""
    if not line:
        return ""
    lines = text.splitlines()
    first, last = max(1, line - around), min(len(lines), line + around)
    return "\n".join(f"{'>' if number == line else ' '} {number:4d}| {lines[number - 1]}"
                     for number in range(first, last + 1))
