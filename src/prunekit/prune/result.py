"""The typed result every pruning method returns.

A method gives back what it was asked for and what it reached (both as the removed fraction, `ratio`'s
meaning everywhere in prunekit), one row per pruned layer or group, the structural plan when it changed shapes
(so a saved folder can be rebuilt), and its own details. The result is also a read-only mapping over its report
(`result["layers"]`, `dict(result)`), the flat form a run's report.json stores.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, eq=False)
class PruneResult(Mapping):
    """requested / achieved: removed fraction asked for and reached (of the weights, parameters or blocks the
    method counts). layers: {name: row} with at least "requested" and "actual". plan: the structural plan (None
    for masks only). details: method-specific report entries (timings, scores, training curves). model: the
    pruned model when the result comes from `prunekit.prune`, so `prunekit.save(result, folder)` has both."""

    requested: float
    achieved: float
    layers: dict[str, dict]
    plan: Any = None
    details: dict[str, Any] = field(default_factory=dict)
    model: Any = field(default=None, repr=False)  # the pruned LoadedModel, set by prunekit.prune (not reported)

    def report(self, *, with_plan: bool = True) -> dict[str, Any]:
        """The flat report: layers, the plan (unless `with_plan` is False), requested_sparsity, actual_sparsity
        and the details."""
        out: dict[str, Any] = {"layers": self.layers}
        if with_plan and self.plan is not None:
            out["plan"] = self.plan
        out.update(self.details)
        out["requested_sparsity"] = self.requested
        out["actual_sparsity"] = self.achieved
        return out

    def __getitem__(self, key: str) -> Any:
        return self.report()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.report())

    def __len__(self) -> int:
        return len(self.report())
