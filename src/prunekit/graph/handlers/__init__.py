"""Built-in layer handlers; `register_builtin_handlers()` adds them to prunekit's own handler registry."""

from __future__ import annotations

from ...registry import Registry
from ..handler import HANDLERS, register_default
from . import attention, basic

_DONE = False


def register_builtin_handlers() -> None:
    """Register the built-in handlers once; handlers the user registered first are kept."""
    global _DONE
    if _DONE:
        return
    basic.register_builtin(register_default)
    attention.register_builtin(register_default)
    _DONE = True


def handler_registry() -> Registry:
    """The handler registry with the built-ins in it (they register on first use; listing them is a use)."""
    register_builtin_handlers()
    return HANDLERS
