"""Render one SLS file: the renderer pipe from its ``#!`` line (default ``jinja|yaml``), in order.

``#!jinja|yaml`` runs Jinja, then reads the result as YAML; ``#!yaml`` reads YAML only,
``#!jinja|json`` and ``#!json`` read JSON. The shebang line stays in the text (it is a
comment to YAML and plain text to Jinja), so line numbers in errors match the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from autopi_common.sls import RenderError
from autopi_common.sls.jinja import SourceLoader, render_jinja
from autopi_common.sls.yamlload import load_yaml

__all__ = ["DEFAULT_PIPE", "RENDERERS", "render_sls", "render_template", "renderer_pipe",
           "sls_variables"]

DEFAULT_PIPE = "jinja|yaml"
# Text renderers turn text into text; data renderers turn text into data and end a pipe.
TEXT_RENDERERS = ("jinja",)
DATA_RENDERERS = ("yaml", "json")
RENDERERS = TEXT_RENDERERS + DATA_RENDERERS


def renderer_pipe(text: str, default: str = DEFAULT_PIPE, source: str = "<string>") -> list[str]:
    """The renderers to run over ``text``, from its first line's ``#!`` or ``default``.

    Raises RenderError for an unknown renderer or a pipe that cannot work (data renderers
    must come last).
    """
    first = text.split("\n", 1)[0].strip()
    spec = default
    if first.startswith("#!") and not first.startswith("#!/"):
        spec = first[2:]
    names = [part.strip().split()[0] for part in spec.split("|") if part.strip()]
    if not names:
        raise RenderError(source, f"empty renderer pipe {spec!r}", 1)
    for position, name in enumerate(names):
        if name not in RENDERERS:
            raise RenderError(source, f"renderer {name!r} is not supported; use one of "
                              f"{', '.join(RENDERERS)} (as in '#!jinja|yaml')", 1)
        if name in DATA_RENDERERS and position != len(names) - 1:
            raise RenderError(source, f"renderer {name!r} produces data and must come last "
                              f"in the pipe {spec!r}", 1)
    return names


def render_sls(text: str, *, source: str, context: Mapping[str, Any],
               fetch: SourceLoader | None = None, default: str = DEFAULT_PIPE) -> Any:
    """Render SLS ``text`` (from ``source``, a name for messages) into data.

    ``context`` is what Jinja sees (``grains``, ``pillar``, ``salt``, ``opts``, ``sls``,
    ``saltenv`` ...); ``fetch`` resolves ``{% include %}``/``{% import %}`` names. A file
    whose pipe ends in Jinja yields its text. Raises RenderError naming the file and line.
    """
    value: Any = text
    for name in renderer_pipe(text, default, source):
        if name == "jinja":
            value = render_jinja(value, source=source, context=context, fetch=fetch)
        elif name == "yaml":
            value = load_yaml(value, source)
        else:
            value = _load_json(value, source)
    return value


def render_template(text: str, *, source: str, context: Mapping[str, Any],
                    fetch: SourceLoader | None = None) -> str:
    """Render a Jinja file template (``file.managed ... template: jinja``) into text."""
    return render_jinja(text, source=source, context=context, fetch=fetch)


def _load_json(text: str, source: str) -> Any:
    lines = text.splitlines()
    if lines and lines[0].startswith("#!"):
        text = "\n" + "\n".join(lines[1:])  # keep the numbering of the remaining lines
    try:
        return json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as err:
        raise RenderError(source, f"JSON error: {err.msg}", err.lineno) from err


def sls_variables(sls: str, relpath: str) -> dict[str, str]:
    """The path variables Salt gives an SLS template (``tpldir``, ``slspath``, ``sls_path`` ...).

    ``sls`` is the SLS name (``apache.mods``), ``relpath`` its file (``apache/mods.sls``
    or ``apache/mods/init.sls``).
    """
    slspath = relpath.rsplit("/", 1)[0] if "/" in relpath else ""
    return {"tplfile": relpath, "tpldir": slspath or ".", "tpldot": slspath.replace("/", "."),
            "slspath": slspath, "slsdotpath": slspath.replace("/", "."),
            "slscolonpath": slspath.replace("/", ":"), "sls_path": slspath.replace("/", "_")}
