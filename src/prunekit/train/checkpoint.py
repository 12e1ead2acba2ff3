"""Resumable training checkpoints: one file, written to a temporary name and renamed (never half-written)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """torch.save `state` to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | os.PathLike, config: dict[str, Any]) -> dict[str, Any] | None:
    """The state saved at `path`, or None when there is none; ConfigError when it was written by a run with
    other settings (resuming it would silently mix two runs)."""
    path = Path(path)
    if not path.is_file():
        return None
    state = torch.load(path, weights_only=False)
    if state.get("config") != config:
        changed = sorted(k for k in set(config) | set(state.get("config", {}))
                         if config.get(k) != state.get("config", {}).get(k))
        raise ConfigError(f"The checkpoint '{path}' was written with other settings ({', '.join(changed[:5])}); "
                          "delete it to start over, or run with the settings it was written with.")
    return state
