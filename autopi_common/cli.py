"""What both command lines share: the -c/--config option (before or after the verb) and
where the config comes from when none is named."""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """One program's config: what it is called, its environment variable, its system file."""

    what: str
    env: str
    system_path: str

    def option(self, parser: argparse.ArgumentParser, top: bool) -> None:
        """Add -c/--config and --log-level; on a verb's parser they must not reset the top."""
        kwargs: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
        parser.add_argument("-c", "--config", metavar="FILE",
                            help=f"{self.what} config file (YAML); default: ${self.env}, "
                                 f"else {self.system_path} if it exists", **kwargs)
        parser.add_argument("--log-level", metavar="LEVEL", help="override log_level", **kwargs)

    def adder(self) -> Callable[..., None]:
        """``option`` as a function of (parser, top), for code that builds verbs."""
        return functools.partial(ConfigSource.option, self)

    def resolve(self, named: str | None) -> str | None:
        """Like salt-call: the named file, else the environment's, else the system's."""
        if named:
            return named
        if os.environ.get(self.env):
            return os.environ[self.env]
        return self.system_path if os.path.exists(self.system_path) else None
