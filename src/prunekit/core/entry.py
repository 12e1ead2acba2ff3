"""Packages that are also the public function of the same name.

`prunekit.prune`, `prunekit.recover` and `prunekit.evaluate` are subpackages, and Python binds a subpackage to
its parent's attribute on first import, so a function of that name on `prunekit` would be replaced by the
package as soon as anything imported it. Instead the package itself is callable: `prunekit.prune(model, ...)`
calls `prunekit.api.prune(model, ...)`, whether or not the package was imported before.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class EntryPackage(types.ModuleType):
    """A package whose call is `prunekit.api.<its name>` (looked up on call, so importing it stays light)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module("prunekit.api"), self.__name__.rpartition(".")[2])(*args, **kwargs)


def make_callable(name: str) -> None:
    """Make the already imported package `name` an EntryPackage."""
    sys.modules[name].__class__ = EntryPackage
