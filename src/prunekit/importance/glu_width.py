"""Data-free width criteria for GLU MLP neurons (gate/up rows + down column).

Martra, "Fragile Knowledge, Robust Instruction-Following: The Width Pruning Dichotomy in Llama-3.2"
(2025; code: peremartra/optipfair, optipfair/pruning/mlp_glu.py). Neuron i owns row i of W_gate and
of W_up (each (n, d)); higher score = keep.

- MAW (maximum absolute weight): max + |min| of the concatenated gate and up rows;
- VOW (variance of weights): variance of the concatenated rows;
- PON (product of norms): ||gate_i||_1 * ||up_i||_1.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

GLU_CRITERIA = ("maw", "vow", "pon")


def _rows(gate: Tensor, up: Tensor) -> Tensor:
    if gate.ndim != 2 or gate.shape[0] != up.shape[0]:
        raise ValueError(f"gate and up must be (n, d) with the same n, got {tuple(gate.shape)}, {tuple(up.shape)}")
    return torch.cat([gate.detach().double(), up.detach().double()], dim=1)  # (n, d_gate + d_up)


def maw_scores(gate: Tensor, up: Tensor) -> Tensor:
    """(n,) max + |min| of [gate_i, up_i]."""
    rows = _rows(gate, up)
    return rows.max(dim=1).values + rows.min(dim=1).values.abs()


def vow_scores(gate: Tensor, up: Tensor) -> Tensor:
    """(n,) population variance of [gate_i, up_i]."""
    return _rows(gate, up).var(dim=1, unbiased=False)


def pon_scores(gate: Tensor, up: Tensor) -> Tensor:
    """(n,) ||gate_i||_1 * ||up_i||_1."""
    _rows(gate, up)
    return gate.detach().double().abs().sum(dim=1) * up.detach().double().abs().sum(dim=1)


def glu_width_scores(gate: Tensor, up: Tensor, criterion: str) -> Tensor:
    """(n,) scores of `criterion` in GLU_CRITERIA."""
    fns = {"maw": maw_scores, "vow": vow_scores, "pon": pon_scores}
    if criterion not in fns:
        raise ValueError(f"Unknown GLU criterion '{criterion}'. Valid choices: {', '.join(GLU_CRITERIA)}")
    return fns[criterion](gate, up)


def glu_units(unit: Any, kind: str) -> Tensor:
    """(size,) `kind` (maw, vow, pon) scores of a GLU UnitGroup's neurons."""
    from .flap import unit_scores

    gate, up, pos = unit.glu_rows(kind)
    return unit_scores(glu_width_scores(gate, up, kind), pos, unit.size)
