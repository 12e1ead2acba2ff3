"""One small registry per plug-in kind: register(name), get(name), names().

Every kind of plug-in uses it: models, corpora, methods, tasks, recipe stages, presses, context pruners, model
adapters and graph layer handlers (all shown by `prunekit list`). Entries may point at their implementation by an
import path ("module:attr") so that listing and validating names never imports torch; `load(name)` imports the
implementation on demand. Iterating a registry gives its names, and `registry[name]` is `registry.load(name)`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .errors import unknown_name


@dataclass(frozen=True)
class Entry:
    name: str
    target: Any  # an object, or "package.module:attribute" resolved lazily
    summary: str = ""
    config: type | None = None  # dataclass of the entry's options, validated before anything loads
    kind: str = ""


class Registry:
    """Named plug-ins of one kind (models, corpora, methods, tasks, ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, target: Any, *, summary: str = "", config: type | None = None,
                 kind: str = "", replace: bool = False) -> Entry:
        """Add `name`; a name registered before raises ValueError unless `replace` is true."""
        if not name or name != name.lower() or " " in name:
            raise ValueError(f"{self.kind} names are lowercase without spaces, got '{name}'")
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        entry = Entry(name, target, summary, config, kind)
        self._entries[name] = entry
        return entry

    def get(self, name: str, where: str | None = None) -> Entry:
        if name not in self._entries:
            raise unknown_name(self.kind, name, self._entries, where)
        return self._entries[name]

    def load(self, name: str) -> Any:
        """Return the implementation object, importing it if it was registered by path."""
        target = self.get(name).target
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            return getattr(importlib.import_module(module), attr)
        return target

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> Any:
        return self.load(name)
