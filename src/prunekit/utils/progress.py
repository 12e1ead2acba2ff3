"""Progress bars that stay quiet when output is not a terminal or when asked to."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_QUIET = False


def set_quiet(quiet: bool) -> None:
    global _QUIET
    _QUIET = quiet


def progress_enabled() -> bool:
    if _QUIET or os.environ.get("PRUNEKIT_QUIET"):
        return False
    return sys.stderr.isatty()


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar on a TTY, silently otherwise."""
    if not progress_enabled():
        yield from items
        return
    from tqdm.auto import tqdm

    yield from tqdm(items, desc=description, total=total, leave=False, dynamic_ncols=True)


def log(message: str) -> None:
    """A one-line status message on stderr (suppressed by --quiet)."""
    if not _QUIET:
        print(message, file=sys.stderr, flush=True)
