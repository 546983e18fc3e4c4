"""SLS files as Salt writes them: Jinja2|YAML rendering, top files, pillar trees (pure, shared).

Both sides use this package: the agent renders state trees, the master renders pillar. It
reads nothing by itself: files come through a ``SourceLoader`` (a callable from a name to
text) so the same code serves a local directory, an agent's file cache or the master.

Exceptions::

    SlsError (autopi_common.CommonError)
     ├── RenderError (ValueError)   a template or YAML document cannot be rendered;
     │                              names the file and the line
     └── TopError (ValueError)      a top file is not shaped as Salt expects
"""

from __future__ import annotations

from autopi_common import CommonError

__all__ = ["RenderError", "SlsError", "TopError"]


class SlsError(CommonError):
    """Root of the errors raised while rendering or compiling SLS files."""


class RenderError(SlsError, ValueError):
    """A file failed to render; ``source`` and ``line`` say where (line may be unknown)."""

    def __init__(self, source: str, message: str, line: int | None = None,
                 context: str = "") -> None:
        self.source = source
        self.message = message
        self.line = line
        self.context = context
        where = f"{source}, line {line}" if line else source
        text = f"{where}: {message}"
        if context:
            text += f"\n{context}"
        super().__init__(text)


class TopError(SlsError, ValueError):
    """A top file is malformed (not a mapping of environments to targets to SLS lists)."""
