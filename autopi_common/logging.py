"""structlog setup: JSON lines for services and pipes, a readable console on a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog

__all__ = ["LOG_LEVELS", "LogFormat", "setup_logging"]

LogFormat = Literal["auto", "json", "console"]

# Salt's level names, so a Salt config's log_level keeps working; ours maps them to stdlib.
LOG_LEVELS: dict[str, int] = {
    "all": logging.DEBUG,
    "garbage": logging.DEBUG,
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "profile": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "quiet": logging.CRITICAL + 10,
}

_MARK = "_autopi_handler"


def _renderer(fmt: LogFormat, stream: TextIO) -> Any:
    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    if fmt == "console" or (fmt == "auto" and is_tty):
        return structlog.dev.ConsoleRenderer(colors=is_tty)
    if fmt not in ("auto", "json"):
        raise ValueError(f"log format {fmt!r}: use one of 'auto', 'json', 'console'")
    return structlog.processors.JSONRenderer()


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


def _install_handler(level: int, renderer: Any, stream: TextIO) -> None:
    """Route stdlib logging (ours and libraries' such as python-OBD) through one renderer."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info
            if isinstance(renderer, structlog.processors.JSONRenderer)
            else _identity,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    _adopt_library_loggers()


# Libraries that attach their own stderr handler and level at import time (python-OBD prints
# "[obd] ..." lines that would break JSON logs): their records go through ours instead.
ADOPTED_LOGGERS = ("obd",)


# Libraries that warn about nothing a user can act on (pint redefines units for python-OBD).
QUIETED_LOGGERS = ("pint.util",)


def _adopt_library_loggers() -> None:
    for name in QUIETED_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in ADOPTED_LOGGERS:
        library = logging.getLogger(name)
        for own in [h for h in library.handlers if not getattr(h, _MARK, False)]:
            library.removeHandler(own)
        library.setLevel(logging.NOTSET)
        library.propagate = True


def _identity(_logger: Any, _name: str, event: Any) -> Any:
    return event


def setup_logging(
    level: str = "info", fmt: LogFormat = "auto", stream: TextIO | None = None
) -> None:
    """Configure structlog and stdlib logging; safe to call again to change settings.

    ``level`` is a Salt log level name; ``fmt`` "auto" picks console on a TTY, else JSON.
    Nothing is configured at import: a process calls this once at start-up.
    """
    stream = sys.stderr if stream is None else stream
    try:
        numeric = LOG_LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"log level {level!r}: use one of {', '.join(LOG_LEVELS)}") from None
    renderer = _renderer(fmt, stream)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached, so a later call (a reload, a test) takes effect for every logger.
        cache_logger_on_first_use=False,
    )
    _install_handler(numeric, renderer, stream)
