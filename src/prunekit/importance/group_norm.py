"""Group norm importance for structured pruning: the Lp norm of every parameter slice a unit owns,
summed over all coupled layers of the group (Li et al. 2017, "Pruning Filters for Efficient
ConvNets", use the L1 filter norm; Fang et al. 2023, DepGraph, sum it over the coupled group)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def group_norm_scores(slices: Sequence[tuple[Tensor, int, Tensor]], num_units: int, p: int = 2) -> Tensor:
    """(num_units,) float32 scores, higher = keep.

    slices: (weight, dim, unit) triples; unit[i] (weight.shape[dim],) is the unit that owns index i
    along `dim`, or -1. L1 (p=1): sum |w|. L2 (p=2): sqrt(sum w^2) over all slices of a unit.
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p}")
    total = torch.zeros(num_units, dtype=torch.float64)
    for weight, dim, unit in slices:
        w = weight.detach().float().abs()
        w = w.square() if p == 2 else w
        per_index = (w.sum(dim=[d for d in range(w.ndim) if d != dim]) if w.ndim > 1 else w).double()  # (size,)
        keep = unit >= 0
        total.index_add_(0, unit[keep], per_index[keep])
    return (total.sqrt() if p == 2 else total).float()


def l2_units(unit: Any) -> Tensor:
    """(size,) float64 L2 norms of a UnitGroup's units over every parameter slice of its group."""
    slices = [(td.tensor, td.dim, pos) for td, pos in unit.graph.param_slices(unit.group)]
    return group_norm_scores(slices, unit.size, 2).double()
