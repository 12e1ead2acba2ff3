"""One-shot and structured pruning methods. The package is also callable: `prunekit.prune(model, method, ...)`
is `prunekit.api.prune` (core/entry.py)."""

from ..core.entry import make_callable

make_callable(__name__)
