"""Errors of the agent's execution layer (loader, dispatcher, execution modules).

ExecutionError
 ├── UnknownFunctionError (LookupError)   no such module.function, or its module failed to load
 ├── ArgumentError (TypeError)            wire arguments that do not fit the signature
 ├── CommandExecutionError                a module function failed; carries the job retcode
 └── JobCancelled                         the job hit its time limit or the agent is stopping
"""

from __future__ import annotations

__all__ = [
    "EX_GENERIC",
    "EX_OK",
    "ArgumentError",
    "CommandExecutionError",
    "ExecutionError",
    "JobCancelled",
    "UnknownFunctionError",
]

# Salt's exit codes (salt/defaults/exitcodes.py) as job retcodes.
EX_OK = 0
EX_GENERIC = 1


class ExecutionError(Exception):
    """Root of the errors raised while finding, binding and running execution functions."""


class UnknownFunctionError(ExecutionError, LookupError):
    """The function is not available: unknown module or function, or its module is broken."""

    def __init__(self, function: str, reason: str | None = None) -> None:
        self.function = function
        self.reason = reason
        # Salt's wording, so a stock master shows the same text.
        message = f"'{function}' is not available."
        if reason:
            message += f" Possible reasons: '{reason}'"
        super().__init__(message)


class ArgumentError(ExecutionError, TypeError):
    """The job's arguments do not fit the function's signature."""


class CommandExecutionError(ExecutionError):
    """A module function could not do its work; the job fails with ``retcode``."""

    def __init__(self, message: str, *, retcode: int = EX_GENERIC) -> None:
        super().__init__(message)
        self.retcode = retcode


class JobCancelled(ExecutionError):
    """The running job was told to stop (time limit reached or the agent shutting down)."""
