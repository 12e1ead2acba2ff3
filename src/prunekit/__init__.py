"""prunekit: make PyTorch models smaller and faster by pruning, with honest measurements.

`prunekit.load(spec)` loads a bundled name, a Hugging Face folder (also one saved by prunekit with different
widths per layer), a .gguf file or a hub id; the rest of the API is in `prunekit.api`.
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "load":  # imported on first use, so `import prunekit` stays light
        from .models import load

        return load
    raise AttributeError(f"module 'prunekit' has no attribute '{name}'")
