"""Built-in layer handlers; `register_builtin_handlers()` adds them to prunekit's own handler registry."""

from __future__ import annotations

from . import attention, basic

_DONE = False


def register_builtin_handlers() -> None:
    """Register the built-in handlers once; handlers the user registered first are kept."""
    global _DONE
    if _DONE:
        return
    from ..handler import register_default

    register = register_default

    basic.register_builtin(register)
    attention.register_builtin(register)
    _DONE = True
