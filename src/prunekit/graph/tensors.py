"""Walking the tensors inside nested call arguments and outputs."""

from __future__ import annotations

from typing import Any

from torch import Tensor


def iter_tensors(obj: Any):
    """Tensors inside nested tuples, lists, dicts and ModelOutput-like objects, in order."""
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from iter_tensors(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from iter_tensors(v)
