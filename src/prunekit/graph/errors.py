"""Errors raised while building or applying a dependency graph."""

from __future__ import annotations

from ..errors import PrunekitError


class UnsupportedOperation(PrunekitError, NotImplementedError):
    """The graph met a module or operation it cannot follow; the message says how to register a handler."""


class StaleGraph(PrunekitError, RuntimeError):
    """The model was pruned after this graph was built; build a new graph."""
