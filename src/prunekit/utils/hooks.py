"""The one helper through which prunekit registers hooks: it tracks handles and always removes them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class HookSet:
    """Register forward hooks and remove all of them on `remove()` or on leaving a `with` block."""

    def __init__(self) -> None:
        self._handles: list[Any] = []

    def forward(self, module, fn: Callable, *, with_kwargs: bool = False) -> None:
        self._handles.append(module.register_forward_hook(fn, with_kwargs=with_kwargs))

    def forward_pre(self, module, fn: Callable, *, with_kwargs: bool = False) -> None:
        self._handles.append(module.register_forward_pre_hook(fn, with_kwargs=with_kwargs))

    def remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    def __enter__(self) -> HookSet:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def __len__(self) -> int:
        return len(self._handles)
