"""One-shot weight pruning criteria as plug-ins, run by prunekit.prune.oneshot (light: importable without torch).

A criterion declares the calibration statistics it needs and where its scores compete, and implements a pure
``score(weight (out, in), stats, config) -> (out, in)``, higher = keep. The runner collects the statistics,
builds the keep mask (per row, per layer, or N:M along the inputs) and applies it. A solver (SparseGPT) chooses
and updates the weights itself: ``solve(weight (out, in), stats, ratio, nm, config) -> new weight (out, in)``.

Statistics, all per layer:
- "norms": ||X_j||_2^2 of each input feature, (in,); "hessian": H = (2/N) X^T X, (in, in). Both come from the
  layer's input in the block-by-block pass (prunekit.calib), so every layer is scored on the outputs of the
  already pruned layers before it. Layers that read one input (q/k/v, gate/up) share one mapping; a solver may
  memoise derived matrices in it (SparseGPT's inverse factor).
- anything else (e.g. "gradients") comes from the criterion's ``prepare(loaded, layers, config, inputs)``, which
  runs once on the dense model before pruning and returns ``{layer name: {statistic: tensor}}``.
- "generator": a seeded ``torch.Generator`` (recipe calibration seed), given to criteria that need no data.

Global and RD allocation compare weights across layers with ``ranked_by``'s scores (the criterion itself when
unset); a ranking criterion needs at most "norms", which one dense pass gives for all layers at once.

Register a criterion in prunekit/methods.py: ``_weights("name", "module:ATTRIBUTE", "summary")``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..registry import Registry

INPUT_STATISTICS = ("norms", "hessian")  # collected from each layer's input during calibration
GROUPS = ("row", "layer")

CRITERIA = Registry("criterion")  # method name -> "module:attribute" of a Criterion (registered by methods.py)


@dataclass(frozen=True)
class Criterion:
    """statistics: what `score` / `solve` read (see the module docstring). group: where scores compete, "row"
    (every output row loses the same count, as Wanda) or "layer" (one threshold per layer); N:M patterns always
    compete within groups of M inputs of a row. Exactly one of `score` and `solve`. prepare: computes the
    statistics that are not input statistics. ranked_by: the criterion whose scores rank weights across layers."""

    statistics: tuple[str, ...] = ()
    group: Literal["row", "layer"] = "layer"
    score: Callable[..., Any] | None = None
    solve: Callable[..., Any] | None = None
    prepare: Callable[..., dict] | None = None
    ranked_by: Criterion | None = None

    def __post_init__(self) -> None:
        if (self.score is None) == (self.solve is None):
            raise ValueError("a criterion has exactly one of `score` (scores, higher = keep) and `solve`")
        if self.group not in GROUPS:
            raise ValueError(f"Unknown group '{self.group}'. Valid choices: {', '.join(GROUPS)}")
        other = [s for s in self.statistics if s not in INPUT_STATISTICS]
        if other and self.prepare is None:
            raise ValueError(f"statistic '{other[0]}' is not an input statistic ({', '.join(INPUT_STATISTICS)}); "
                             "the criterion needs a `prepare` that computes it")
        ranking = self.ranking
        if ranking.solve is not None or not set(ranking.statistics) <= {"norms"}:
            raise ValueError(f"weights are ranked across layers by a score from at most 'norms', but the ranking "
                             f"criterion needs {ranking.statistics}; set `ranked_by` (e.g. Wanda's criterion)")

    @property
    def calibrated(self) -> bool:
        """Whether the criterion reads input statistics (then it runs block by block on calibration data)."""
        return any(s in INPUT_STATISTICS for s in self.statistics)

    @property
    def ranking(self) -> Criterion:
        """The criterion that ranks weights across layers (global threshold, RD curves)."""
        return self.ranked_by or self
