"""The state engine: SLS trees rendered to high data, compiled to ordered low chunks, and run.

``highstate`` renders the tree (top file, includes, extend, exclude, automatic order);
``compiler`` turns high data into low chunks (requisite_in, extend, checks);
``ordering`` sorts the chunks as Salt 3008 does (order, then requisites, then names);
``runner`` runs them with requisites, conditions and ``test=True``, returning Salt's shape.

Exceptions::

    StateError
     └── StateUsageError (ValueError)   a state function was called in a way that cannot work
"""

from __future__ import annotations

__all__ = ["StateError", "StateUsageError"]


class StateError(Exception):
    """Root of the errors raised by the state engine."""


class StateUsageError(StateError, ValueError):
    """A state call that cannot work (unknown state function, bad arguments)."""
