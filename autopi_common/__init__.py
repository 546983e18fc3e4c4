"""Small shared utilities with I/O: config schemas, atomic files, key files, logging setup.

Exceptions::

    CommonError
     ├── ConfigError (ValueError)      a config file or override is unreadable or invalid
     └── KeyFileError                  a key file is unsafe (mode) or not a usable key

Imports ``autopi_proto`` at most; never a side (agent or master).
"""


class CommonError(Exception):
    """Root of every error raised by autopi_common."""


__all__ = ["CommonError"]
