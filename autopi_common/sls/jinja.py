"""Jinja2 as Salt configures it for SLS and templates: sandboxed, strict about undefined names.

Included and imported templates (``{% include 'map.jinja' %}``, ``{% from './defaults.jinja'
import x %}``, ``{% import_yaml 'defaults.yaml' as d %}``) come from a ``SourceLoader``: a
callable from a name relative to the file root to the text, or None when there is no such
file. A name starting with ``./`` or ``../`` is relative to the template that asks for it.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.sandbox
import yaml
from jinja2.exceptions import SecurityError

from autopi_common.sls import RenderError

__all__ = ["SaltFunctions", "SourceLoader", "make_environment", "render_jinja"]

SourceLoader = Callable[[str], "str | None"]

_EXTENSIONS: list[Any] = ["jinja2.ext.do", "jinja2.ext.loopcontrols"]


class _Loader(jinja2.BaseLoader):
    """Serves the template being rendered under its own name, the rest through ``fetch``."""

    def __init__(self, main_name: str, main_text: str, fetch: SourceLoader | None) -> None:
        self.main_name = main_name
        self.main_text = main_text
        self.fetch = fetch
        self.served: dict[str, str] = {main_name: main_text}

    def get_source(self, environment: jinja2.Environment,
                   template: str) -> tuple[str, str, Callable[[], bool]]:
        if template == self.main_name:
            return self.main_text, template, lambda: True
        name = template.removeprefix("salt://")
        text = self.fetch(name) if self.fetch is not None else None
        if text is None:
            raise jinja2.TemplateNotFound(template)
        self.served[name] = text
        return text, name, lambda: True


class _Serializers(jinja2.ext.Extension):
    """Salt's ``{% import_yaml 'f.yaml' as x %}`` (and ``import_json``, ``import_text``), and
    ``{% load_yaml as x %}...{% endload %}`` (``load_json``, ``load_text``). An imported file
    is rendered as a template first, as Salt does."""

    tags = {f"{verb}_{kind}" for verb in ("import", "load") for kind in ("yaml", "json", "text")}

    def parse(self, parser: Any) -> list[jinja2.nodes.Node]:
        verb, _, kind = str(parser.stream.current.value).partition("_")
        node: jinja2.nodes.Node
        source: jinja2.nodes.Expr
        if verb == "import":
            node = parser.parse_import()  # consumes the tag as Jinja's own "import" would
            target = str(node.target)  # type: ignore[attr-defined]
            source = jinja2.nodes.Name(target, "load")
        else:
            lineno = next(parser.stream).lineno
            parser.stream.expect("name:as")
            target = parser.parse_assign_target(name_only=True).name
            body = parser.parse_statements(("name:endload",), drop_needle=True)
            macro = f"_load_{target}"
            node = jinja2.nodes.Macro(macro, [], [], body).set_lineno(lineno)
            source = jinja2.nodes.Call(jinja2.nodes.Name(macro, "load"), [], [], None, None)
        value = self.call_method(f"_{kind}", [source])
        return [node, jinja2.nodes.Assign(jinja2.nodes.Name(target, "store"), value)]

    @staticmethod
    def _text(value: Any) -> str:
        return str(value)

    @staticmethod
    def _yaml(value: Any) -> Any:
        try:
            return yaml.safe_load(str(value))
        except yaml.YAMLError as err:
            raise jinja2.TemplateRuntimeError(
                f"Unable to load yaml from {getattr(value, '__name__', 'a block')}: {err}") from err

    @staticmethod
    def _json(value: Any) -> Any:
        try:
            return json.loads(str(value))
        except ValueError as err:
            raise jinja2.TemplateRuntimeError(
                f"Unable to load json from {getattr(value, '__name__', 'a block')}: {err}") from err


class _Environment(jinja2.sandbox.SandboxedEnvironment):
    def join_path(self, template: str, parent: str) -> str:
        if template.startswith(("./", "../")):
            base = posixpath.dirname(parent.removeprefix("salt://"))
            return posixpath.normpath(posixpath.join(base, template))
        return template


def make_environment(main_name: str, main_text: str,
                     fetch: SourceLoader | None = None) -> jinja2.Environment:
    """A Salt-like Jinja environment whose loader knows the main template and ``fetch``."""
    env = _Environment(loader=_Loader(main_name, main_text, fetch),
                       extensions=[*_EXTENSIONS, _Serializers],
                       undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters.update(FILTERS)
    env.tests.update(TESTS)
    return env


def render_jinja(text: str, *, source: str, context: Mapping[str, Any],
                 fetch: SourceLoader | None = None) -> str:
    """Render ``text`` (from file ``source``) with ``context`` as Salt's jinja renderer does.

    Raises RenderError naming the template and line where rendering failed.
    """
    env = make_environment(source, text, fetch)
    env.globals.update(context)  # imported macros see grains, pillar, salt as Salt's do
    try:
        return env.get_template(source).render(**context)
    except jinja2.TemplateSyntaxError as err:
        name = err.filename or err.name or source
        raise RenderError(name, f"Jinja syntax error: {err.message}", err.lineno,
                          _excerpt(_text_of(env, name, text, source), err.lineno)) from err
    except jinja2.TemplateNotFound as err:
        line, name = _template_line(err, env, source)
        raise RenderError(name, f"Jinja template not found: {err.name}", line) from err
    except jinja2.UndefinedError as err:
        line, name = _template_line(err, env, source)
        raise RenderError(name, f"Jinja variable {err}", line,
                          _excerpt(_text_of(env, name, text, source), line)) from err
    except (jinja2.TemplateError, SecurityError) as err:
        line, name = _template_line(err, env, source)
        raise RenderError(name, f"Jinja error: {err}", line,
                          _excerpt(_text_of(env, name, text, source), line)) from err
    except RenderError:
        raise
    except Exception as err:  # a salt[...] call inside the template failed
        line, name = _template_line(err, env, source)
        raise RenderError(name, f"Problem running salt function in Jinja template: "
                          f"{type(err).__name__}: {err}", line,
                          _excerpt(_text_of(env, name, text, source), line)) from err


def _template_line(err: BaseException, env: jinja2.Environment,
                   source: str) -> tuple[int | None, str]:
    """The innermost template frame of ``err``'s traceback: (line, template name)."""
    served = env.loader.served if isinstance(env.loader, _Loader) else {source: ""}
    found: tuple[int | None, str] = (None, source)
    for frame in traceback.extract_tb(err.__traceback__):
        if frame.filename in served:
            found = (frame.lineno, frame.filename)
    return found


def _text_of(env: jinja2.Environment, name: str, text: str, source: str) -> str:
    served = env.loader.served if isinstance(env.loader, _Loader) else {}
    return served.get(name, text if name == source else "")


def _excerpt(text: str, line: int | None, around: int = 2) -> str:
    if not line or not text:
        return ""
    lines = text.splitlines()
    first, last = max(1, line - around), min(len(lines), line + around)
    return "\n".join(f"{'>' if number == line else ' '} {number:4d}| {lines[number - 1]}"
                     for number in range(first, last + 1))


# -- Salt's filters and tests (the commonly used part) ------------------------------------


def _yaml(value: Any, flow_style: bool = True) -> str:
    dumped = str(yaml.safe_dump(value, default_flow_style=flow_style, allow_unicode=True))
    return dumped.removesuffix("\n...\n").strip()


def _json(value: Any, sort_keys: bool = True, indent: int | None = None) -> str:
    return json.dumps(value, sort_keys=sort_keys, indent=indent)


def _yaml_encode(value: Any) -> str:
    return _yaml(value)


def _yaml_dquote(value: Any) -> str:
    return json.dumps(str(value))


def _yaml_squote(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _load_yaml(value: str) -> Any:
    return yaml.safe_load(value)


def _load_json(value: str) -> Any:
    return json.loads(value)


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1", "y")
    if isinstance(value, (int, float)):
        return value > 0
    return bool(value)


def _unique(values: Iterable[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def _sequence(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _regex_match(text: str, pattern: str, ignorecase: bool = False) -> Any:
    found = re.match(pattern, text, re.I if ignorecase else 0)
    return found.groups() if found else None


def _regex_search(text: str, pattern: str, ignorecase: bool = False) -> Any:
    found = re.search(pattern, text, re.I if ignorecase else 0)
    return found.groups() if found else None


def _regex_replace(text: str, pattern: str, repl: str, ignorecase: bool = False) -> str:
    return re.sub(pattern, repl, text, flags=re.I if ignorecase else 0)


def _hash(name: str) -> Callable[[Any], str]:
    def digest(value: Any) -> str:
        data = value if isinstance(value, bytes) else str(value).encode()
        return hashlib.new(name, data).hexdigest()
    return digest


FILTERS: dict[str, Callable[..., Any]] = {
    "yaml": _yaml, "json": _json, "tojson": _json, "yaml_encode": _yaml_encode,
    "yaml_dquote": _yaml_dquote, "yaml_squote": _yaml_squote, "load_yaml": _load_yaml,
    "load_json": _load_json, "to_bool": _to_bool, "unique": _unique, "sequence": _sequence,
    "regex_match": _regex_match, "regex_search": _regex_search,
    "regex_replace": _regex_replace, "md5": _hash("md5"), "sha256": _hash("sha256"),
    "sha512": _hash("sha512"),
}

TESTS: dict[str, Callable[..., bool]] = {
    "list": lambda value: isinstance(value, (list, tuple)),
    "match": lambda value, pattern: re.match(pattern, str(value)) is not None,
}


class SaltFunctions(Mapping[str, Callable[..., Any]]):
    """The ``salt`` object of a template: ``salt['grains.get']('os')`` or ``salt.grains.get('os')``.

    ``lookup`` finds a function by its ``module.function`` name (KeyError when unknown);
    ``names`` lists the known names for iteration.
    """

    def __init__(self, lookup: Callable[[str], Callable[..., Any]],
                 names: Callable[[], Iterable[str]] = lambda: ()) -> None:
        self._lookup = lookup
        self._names = names

    def __getitem__(self, name: str) -> Callable[..., Any]:
        return self._lookup(name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names()))

    def __len__(self) -> int:
        return len(list(self._names()))

    def __contains__(self, name: object) -> bool:
        try:
            self._lookup(str(name))
        except KeyError:
            return False
        return True

    def __getattr__(self, module: str) -> _Module:
        if module.startswith("_"):
            raise AttributeError(module)
        return _Module(self, module)


class _Module:
    __slots__ = ("_functions", "_module")

    def __init__(self, functions: SaltFunctions, module: str) -> None:
        self._functions = functions
        self._module = module

    def __getattr__(self, name: str) -> Callable[..., Any]:
        try:
            return self._functions[f"{self._module}.{name}"]
        except KeyError:
            raise AttributeError(f"{self._module}.{name}") from None
