"""The catalogue of pruning methods: name -> options dataclass and implementation (imported lazily)."""

from __future__ import annotations

from .prune.config import WeightPruneConfig
from .registry import Registry

METHODS = Registry("method")
METHODS.register("magnitude", "prunekit.prune.oneshot:prune_weights", config=WeightPruneConfig, kind="weights",
                 summary="|W|: remove the smallest weights (Han et al. 2015)")
