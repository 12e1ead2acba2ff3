"""prunekit: make PyTorch models smaller and faster by pruning, with honest measurements.

`prunekit.load(spec)` loads a bundled name, a Hugging Face folder (also one saved by prunekit with different
widths per layer), a folder saved from a plain PyTorch module, a .gguf file or a hub id; `prunekit.prune`,
`prunekit.save`, `prunekit.recover`, `prunekit.evaluate`, `prunekit.run` and `prunekit.compress_context` are
`prunekit.api`'s.
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "load":  # imported on first use, so `import prunekit` stays light
        from .models import load

        return load
    if name in ("prune", "recover", "evaluate"):  # callable packages (core/entry.py)
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    if name in ("save", "run", "compress_context"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'prunekit' has no attribute '{name}'")
