"""FLAP: fluctuation-based structured importance with bias compensation.

An et al., "Fluctuation-based Adaptive Structured Pruning for Large Language Models", AAAI 2024
(code: CASIA-IVA-Lab/FLAP). For an output projection y = W x + b (o_proj, down_proj) and an input
channel j with calibration mean mu_j and variance V_j:

- WIFV score S_j = V_j * ||W[:, j]||^2 (removing j and replacing x_j by its mean changes the output
  by W[:, j] (x_j - mu_j), whose expected squared norm is exactly S_j);
- a head (or any unit owning several channels) scores the sum of its channels' S_j;
- scores are standardised per structure type (heads, MLP channels) before one global ranking;
- bias compensation: b += W[:, removed] @ mu[removed], which keeps the output's expectation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def wifv_scores(weight: Tensor, variance: Tensor) -> Tensor:
    """(in,) S_j = V_j * sum_i W[i, j]^2 for weight (out, in) and input variance (in,)."""
    if weight.ndim != 2 or variance.shape != (weight.shape[1],):
        raise ValueError(f"weight must be (out, in) and variance (in,), got {tuple(weight.shape)}, "
                         f"{tuple(variance.shape)}")
    return variance.double() * weight.detach().double().square().sum(dim=0)  # (in,)


def unit_scores(channel_scores: Tensor, unit: Tensor, num_units: int) -> Tensor:
    """(num_units,) sum of channel_scores (in,) over the channels each unit owns (unit (in,), -1 = none)."""
    total = torch.zeros(num_units, dtype=torch.float64)
    keep = unit >= 0
    total.index_add_(0, unit[keep], channel_scores.double()[keep])
    return total


def standardize(scores: Sequence[Tensor]) -> list[Tensor]:
    """Each tensor minus the mean, over the std, of all of them together (one structure type)."""
    flat = torch.cat([s.double().reshape(-1) for s in scores])  # (N,)
    mean = flat.mean()
    std = flat.std() if flat.numel() > 1 else flat.new_tensor(1.0)
    std = std if std > 0 else flat.new_tensor(1.0)
    return [(s.double() - mean) / std for s in scores]


def bias_compensation(weight: Tensor, mean: Tensor, removed: Tensor) -> Tensor:
    """(out,) W[:, removed] @ mu[removed]: add it to the bias after removing input channels `removed`."""
    removed = removed.long()
    w = weight.detach().double()[:, removed]  # (out, r)
    return (w @ mean.double()[removed]).to(weight.dtype)  # (out,)


def flap_units(unit: Any) -> Tensor:
    """(size,) FLAP scores of a UnitGroup: the WIFV scores of its output projection's input channels, per unit."""
    return unit_scores(wifv_scores(unit.weight, unit.fluctuation.variance), unit.pos, unit.size)
