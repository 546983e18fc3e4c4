"""What both command lines share: the -c/--config option (before or after the verb) and
where the config comes from when none is named."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Mapping, Sequence
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


Loader = Callable[[str | None, Mapping[str, Any] | None], dict[str, Any]]
Verb = Callable[[Mapping[str, Any], argparse.Namespace], int]


def run_verb(prog: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None,
             source: ConfigSource, load: Loader, verbs: Callable[[], Mapping[str, Verb]],
             errors: tuple[type[BaseException], ...] = (OSError,)) -> int:
    """Parse, load and check the config, set up logging, run the verb; an exit status.

    Config errors exit 2 with the file, key and expectation; ``errors`` exit 1 with their
    message; only a ``serve`` verb logs at the configured level (a CLI stays quiet).
    """
    ns = parser.parse_args(argv)
    if ns.verb is None:
        parser.print_help()
        return EXIT_USAGE
    from autopi_common.config import ConfigError
    from autopi_common.logging import setup_logging

    try:
        opts = load(source.resolve(ns.config), {"log_level": ns.log_level} if ns.log_level else None)
    except ConfigError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(opts["log_level"] if ns.verb == "serve" else "warning", opts["log_format"])
    try:
        return verbs()[ns.verb](opts, ns)
    except KeyboardInterrupt:
        return 130
    except errors as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_FAIL
