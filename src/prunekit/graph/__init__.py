"""Dependency graph for structured pruning: trace, groups of coupled channels, per-layer handlers.

    graph = DependencyGraph.build(model, example_inputs)
    for group in graph.groups: ...            # units that must be removed together
    graph.prune({group.name: [0, 3]})          # slices every coupled tensor; the model stays runnable

New layer types: `register_handler(MyLayer, MyHandler())` with a `LayerHandler` subclass.
"""

from .errors import StaleGraph, UnsupportedOperation
from .graph import DependencyGraph, Group
from .handler import LayerHandler, handler_for, register_handler, registered_handlers

__all__ = [
    "DependencyGraph", "Group", "LayerHandler", "StaleGraph", "UnsupportedOperation", "handler_for",
    "register_handler", "registered_handlers",
]
