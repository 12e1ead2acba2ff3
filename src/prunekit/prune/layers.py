"""Find the Linear-like layers to prune, and report every weight-bearing module that is left out."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError


@dataclass
class PrunableLayer:
    """A Linear or transformers Conv1D; `weight_view()` is always (out, in)."""

    name: str
    module: Any
    transposed: bool  # Conv1D stores (in, out)

    def weight_view(self):
        weight = self.module.weight.data
        return weight.t() if self.transposed else weight

    def set_weight(self, new) -> None:
        target = self.module.weight.data
        target.copy_(new.t() if self.transposed else new)


def linear_kind(module: Any) -> bool | None:
    """False for nn.Linear, True for Conv1D (transposed), None for anything else."""
    import torch

    if isinstance(module, torch.nn.Linear):
        return False
    if type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None and module.weight.dim() == 2:
        return True
    return None


def select_layers(model: Any, include: list[str], exclude: list[str]) -> tuple[list[PrunableLayer], list[dict]]:
    """(layers to prune, skipped weight-bearing modules with the reason each was skipped).

    Raises when an include pattern matches no module name, so a typo never prunes nothing silently.
    """
    layers, skipped = [], []
    matched = {expr: False for expr in include}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if name == "" or weight is None or not hasattr(weight, "dim"):
            continue
        hits = [expr for expr in include if re.search(expr, name)]
        for expr in hits:
            matched[expr] = True
        kind = linear_kind(module)
        if not hits:
            skipped.append({"layer": name, "type": type(module).__name__, "reason": "not matched by include"})
        elif any(re.search(expr, name) for expr in exclude):
            skipped.append({"layer": name, "type": type(module).__name__, "reason": "excluded"})
        elif kind is None:
            skipped.append({"layer": name, "type": type(module).__name__,
                            "reason": "not a Linear-like layer (weight pruning covers Linear and Conv1D)"})
        else:
            layers.append(PrunableLayer(name, module, kind))
    unused = [expr for expr, hit in matched.items() if not hit]
    if unused:
        raise ConfigError(f"include pattern '{unused[0]}' matches no module of the model")
    if not layers:
        raise ConfigError(f"No Linear-like layer matches include={include} and exclude={exclude}")
    return layers, skipped
