"""Unit criteria: the plug-ins that score the heads and GLU neurons of LLM-structured pruning.

A unit criterion declares what it needs (`activations`: the calibration statistics of the output projection's
inputs; `glu`: a gated MLP, so it scores neurons only) and names a pure score function "module:function" that
takes one `UnitGroup` (a coupled group of the dependency graph with its output projection) and returns (size,)
float64 scores, higher = keep. `prune/llm_structured.py` standardises the scores per structure type, allocates
and slices. A new criterion is one score function plus one `register_unit_criterion` line below. Importable
without torch: the flags are read when a recipe is validated, the score module only when a model is pruned.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..registry import Registry


@dataclass(frozen=True)
class UnitGroup:
    """One coupled group: `graph` and `group` (units, parameter slices), the output projection `name` with its
    (out, in) `weight` view and `pos` (in,) (the unit owning each input channel, -1 = none), and the input
    statistics of that projection (`fluctuation`: mean / variance / token count) when the criterion needs them."""

    graph: Any
    group: Any
    name: str
    weight: Any
    pos: Any
    fluctuation: Any = None

    @property
    def size(self) -> int:
        return self.group.size

    def glu_rows(self, criterion: str) -> tuple[Any, Any, Any]:
        """(gate weight, up weight, pos) of a GLU MLP group: their rows are its neurons."""
        rows = {td.sites[0][0].rsplit(".", 1)[-1]: (td, pos) for td, pos in self.graph.param_slices(self.group)
                if td.dim == 0 and td.tensor.ndim == 2 and td.sites}
        if "gate_proj" not in rows or "up_proj" not in rows:
            raise ConfigError(f"criterion '{criterion}' needs a GLU MLP (gate_proj, up_proj); group "
                              f"'{self.group.name}' has {sorted(rows)}.")
        (gate, pos), (up, _) = rows["gate_proj"], rows["up_proj"]
        return gate.tensor, up.tensor, pos


@dataclass(frozen=True)
class UnitCriterion:
    """score: "module:function" (UnitGroup, **options) -> (size,) scores. activations / glu: what it needs."""

    score: str
    activations: bool = False
    glu: bool = False
    options: dict = field(default_factory=dict)

    def scorer(self) -> Callable[..., Any]:
        module, _, attr = self.score.partition(":")
        return getattr(importlib.import_module(module), attr)


UNIT_CRITERIA = Registry("unit criterion")


def register_unit_criterion(name: str, score: str, summary: str, **flags: Any) -> None:
    UNIT_CRITERIA.register(name, UnitCriterion(score, **flags), summary=summary, kind="llm-structured")


_I = "prunekit.importance"
register_unit_criterion("flap", f"{_I}.flap:flap_units", "fluctuation x column norm of the output projection "
                        "(An et al. 2024)", activations=True)
register_unit_criterion("maw", f"{_I}.glu_width:glu_units", "GLU neuron max absolute weight (Martra 2025)",
                        glu=True, options={"kind": "maw"})
register_unit_criterion("vow", f"{_I}.glu_width:glu_units", "GLU neuron variance of weights (Martra 2025)",
                        glu=True, options={"kind": "vow"})
register_unit_criterion("pon", f"{_I}.glu_width:glu_units", "GLU neuron product of norms (Martra 2025)",
                        glu=True, options={"kind": "pon"})
register_unit_criterion("cfsp", f"{_I}.cfsp:cfsp_units", "CFSP's relative importance with activation norms "
                        "(Wang et al. 2025)", activations=True, glu=True, options={"kind": "cfsp"})
register_unit_criterion("act-norm", f"{_I}.cfsp:cfsp_units", "activation norm of each GLU neuron",
                        activations=True, glu=True, options={"kind": "act-norm"})
register_unit_criterion("l2", f"{_I}.group_norm:l2_units", "L2 norm of each coupled group (DepGraph)")
