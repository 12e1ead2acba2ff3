"""CFSP's channel score for GLU MLP neurons, as the paper intends it, and the released code's reduction.

Wang et al., "CFSP: An Efficient Structured Pruning Framework for LLMs with Coarse-to-Fine Activation
Information" (COLING 2025). Channel j of a GLU MLP owns column j of W_down (d, n) and row j of W_up and
W_gate (n, d). With A_j = ||X_j||_2 the norm of down_proj's input feature j over the calibration tokens,
each weight gets a relative importance in the style of RIA (Zhang et al., ICLR 2024): its magnitude
divided by the sum of magnitudes of its row, plus divided by the sum of its column. The channel score is

    S_j = A_j^c * sum_i [ RI(|W_down| A^b)_ij + RI(|W_up^T|)_ij + RI(|W_gate^T|)_ij ],    a = b = c = 1,

where the matrices are laid out (d, n) so that column j is channel j. The released code (wyxscir/CFSP,
lib/prune.py) keeps only the column normalisation, and a normalised column sums to 1 whatever the
weights, so its score reduces to A_j^c: `activation_norm_scores`, kept as the named baseline "act-norm".
"""

from __future__ import annotations

from typing import Any

from torch import Tensor


def relative_importance(magnitude: Tensor) -> Tensor:
    """(d, n) RIA relative importance |w_ij| / sum_k |w_ik| + |w_ij| / sum_l |w_lj| of a non-negative matrix."""
    rows = magnitude.sum(dim=1, keepdim=True).clamp_min(1e-30)  # (d, 1)
    cols = magnitude.sum(dim=0, keepdim=True).clamp_min(1e-30)  # (1, n)
    return magnitude / rows + magnitude / cols


def cfsp_scores(down: Tensor, up: Tensor, gate: Tensor, activation_norm: Tensor, *, b: float = 1.0,
                c: float = 1.0) -> Tensor:
    """(n,) CFSP channel scores; down (d, n), up and gate (n, d), activation_norm (n,) = ||X_j||."""
    if down.shape[1] != up.shape[0] or up.shape != gate.shape or activation_norm.shape != (down.shape[1],):
        raise ValueError(f"shapes do not form a GLU MLP: down {tuple(down.shape)}, up {tuple(up.shape)}, "
                         f"gate {tuple(gate.shape)}, activation norm {tuple(activation_norm.shape)}")
    a = activation_norm.detach().double()  # (n,)
    terms = relative_importance(down.detach().double().abs() * a.pow(b))  # (d, n)
    for rows in (up, gate):  # (n, d) -> (d, n)
        terms = terms + relative_importance(rows.detach().double().abs().T)
    return a.pow(c) * terms.sum(dim=0)


def activation_norm_scores(activation_norm: Tensor, *, c: float = 1.0) -> Tensor:
    """(n,) ||X_j||^c: what the released CFSP code's score reduces to."""
    return activation_norm.detach().double().pow(c)


def cfsp_units(unit: Any, kind: str) -> Tensor:
    """(size,) CFSP (kind "cfsp") or activation-norm ("act-norm") scores of a GLU UnitGroup's neurons, from
    ||X_j|| of the down projection's inputs (sqrt(tokens x (variance + mean^2)))."""
    import torch

    from ..errors import ConfigError
    from .flap import unit_scores

    gate, up, pos = unit.glu_rows(kind)
    if not torch.equal(unit.pos, pos):
        raise ConfigError(f"criterion '{kind}': down_proj columns and gate/up rows of group '{unit.group.name}' "
                          "are not in the same order.")
    stats = unit.fluctuation
    norm = (stats.n_tokens * (stats.variance.double() + stats.mean.double().square())).sqrt()  # (in,) ||X_j||
    channel = cfsp_scores(unit.weight, up, gate, norm) if kind == "cfsp" else activation_norm_scores(norm)
    return unit_scores(channel, pos, unit.size)
