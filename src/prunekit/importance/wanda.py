"""Wanda importance: Sun et al. 2023, "A Simple and Effective Pruning Approach for Large
Language Models" (arXiv 2306.11695).

S_ij = |W_ij| * ||X_j||_2, where ||X_j||_2 is the L2 norm of input feature j over all
calibration tokens. Wanda compares scores *per output row*, so callers should build the
mask with ``unstructured_keep_mask(scores, s, per_row=True)`` (or ``nm_keep_mask``).
Multiplying ``input_sq_norm`` by a constant (sum vs mean over tokens) does not change
any mask. ``WANDA`` is the criterion plug-in (importance/criterion.py); the module imports without
torch, so options classes of criteria ranked by Wanda stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .criterion import Criterion

if TYPE_CHECKING:
    from torch import Tensor


def wanda_scores(weight: Tensor, input_sq_norm: Tensor) -> Tensor:
    """``|W| * sqrt(input_sq_norm)`` for ``weight`` (out, in) and ``input_sq_norm`` (in,).

    ``input_sq_norm`` is ||X_j||_2^2 as returned by ``InputNormCollector.result()``.
    """
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
    if input_sq_norm.shape != (weight.shape[1],):
        raise ValueError(
            f"input_sq_norm must have shape ({weight.shape[1]},) to match weight {tuple(weight.shape)}, "
            f"got {tuple(input_sq_norm.shape)}"
        )
    norm_sq = input_sq_norm.detach().float().to(weight.device)  # (in,)
    if (norm_sq < 0).any() or norm_sq.isnan().any():
        raise ValueError("input_sq_norm must be >= 0 (it is a sum of squares), got negative or NaN entries")
    return weight.detach().abs().float() * norm_sq.sqrt()  # (out, in)


WANDA = Criterion(statistics=("norms",), group="row",
                  score=lambda weight, stats, config: wanda_scores(weight, stats["norms"]))
