"""OWL allocation: Yin et al. 2024, "Outlier Weighed Layerwise Sparsity (OWL): A Missing
Secret Sauce for Pruning LLMs to High Sparsity" (ICML 2024, arXiv 2310.05175).

Per decoder block l, the Layerwise Outlier Distribution D_l is the fraction of Wanda
scores |W_ij| * ||X_j|| in the block (all its Linear layers together) that exceed
M x the mean score of the block. Blocks with more outliers are pruned less:

1. d_l = (D_l - min D) / (max D - min D)               (min-max, in [0, 1])
2. s_l = target + lam - 2 lam d_l                      (in [target - lam, target + lam])
3. s_l <- clip(s_l + c, lo, hi), lo = max(0, target - lam), hi = min(target + lam, 1^-)
   with the shift c solved so the parameter-weighted mean of s_l equals ``target``.

Step 3 differs slightly from the released code (which shifts by the unweighted mean and
does not clip); it gives an exact weighted mean and keeps every ratio in the paper's
[target - lam, target + lam] band. Each block's ratio then applies to all its Linears.

Interface: compute D_l block by block with :func:`outlier_ratio` (so the scores of all
blocks never need to be in memory at once), then call :func:`owl_ratios_from_outliers`;
:func:`owl_ratios` does both when all scores are at hand.
"""

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from prunekit.core.patterns import check_sparsity

_BELOW_ONE = math.nextafter(1.0, 0.0)  # largest ratio < 1


def outlier_ratio(scores: Sequence[Tensor], M: float = 5.0) -> float:
    """D = fraction of entries of ``scores`` (one block's Linears) above M x their joint mean."""
    if not M > 0:
        raise ValueError(f"M must be > 0, got {M!r}")
    if len(scores) == 0:
        raise ValueError("scores must hold at least one tensor, got an empty sequence")
    total = sum(s.numel() for s in scores)
    if total == 0:
        raise ValueError("scores hold no entries")
    mean = sum(float(s.detach().sum(dtype=torch.float64)) for s in scores) / total
    count = sum(int((s.detach() > M * mean).sum()) for s in scores)
    return count / total


def _check_params(names: list[str], param_counts: Mapping[str, int]) -> list[float]:
    if not names:
        raise ValueError("need at least one block, got none")
    if set(param_counts) != set(names):
        raise ValueError(
            f"param_counts keys must match the blocks {sorted(names)}, got {sorted(param_counts)}"
        )
    weights = [float(param_counts[n]) for n in names]
    if any(not w > 0 for w in weights):
        raise ValueError(f"param_counts must be > 0, got {dict(param_counts)}")
    return weights


def _shift_to_mean(
    raw: list[float], weights: list[float], target: float, lo: float, hi: float
) -> list[float]:
    """clip(raw + c, lo, hi) with c such that the weighted mean equals target (lo <= target <= hi)."""
    wsum = sum(weights)

    def mean_at(c: float) -> float:
        return sum(w * min(max(r + c, lo), hi) for r, w in zip(raw, weights, strict=True)) / wsum

    c_lo, c_hi = lo - max(raw), hi - min(raw)  # mean_at(c_lo) = lo <= target <= hi = mean_at(c_hi)
    for _ in range(200):  # bisection on the monotone piecewise-linear mean
        mid = 0.5 * (c_lo + c_hi)
        if mid in (c_lo, c_hi):
            break
        c_lo, c_hi = (mid, c_hi) if mean_at(mid) < target else (c_lo, mid)
    c = 0.5 * (c_lo + c_hi)
    # exact solve on the linear piece: free ratios absorb the remaining gap
    free = [lo < r + c < hi for r in raw]
    if any(free):
        fixed = sum(w * min(max(r + c, lo), hi) for r, w, f in zip(raw, weights, free, strict=True) if not f)
        free_w = sum(w for w, f in zip(weights, free, strict=True) if f)
        free_raw = sum(w * r for r, w, f in zip(raw, weights, free, strict=True) if f)
        c = (target * wsum - fixed - free_raw) / free_w
    return [min(max(r + c, lo), hi) for r in raw]


def owl_ratios_from_outliers(
    outlier_ratios: Mapping[str, float],
    param_counts: Mapping[str, int],
    target: float,
    lam: float = 0.08,
) -> dict[str, float]:
    """Per-block sparsity from outlier ratios D_l (see module docstring).

    Args:
        outlier_ratios: block name -> D_l from :func:`outlier_ratio`.
        param_counts: block name -> number of prunable weights in the block.
        target: overall sparsity in [0, 1); the parameter-weighted mean of the result.
        lam: half-width of the sparsity band around ``target``, >= 0.

    Returns block name -> sparsity in [max(0, target-lam), min(target+lam, <1)].
    """
    t = check_sparsity(target, "target")
    if not (lam >= 0 and math.isfinite(lam)):
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    names = list(outlier_ratios)
    weights = _check_params(names, param_counts)
    D = [float(outlier_ratios[n]) for n in names]
    if any(not 0.0 <= x <= 1.0 for x in D):
        raise ValueError(f"outlier ratios must be fractions in [0, 1], got {dict(outlier_ratios)}")
    lo, hi = max(0.0, t - lam), min(t + lam, _BELOW_ONE)
    d_min, d_max = min(D), max(D)
    if d_max == d_min or lam == 0:
        return {n: t for n in names}
    raw = [t + lam - 2.0 * lam * (x - d_min) / (d_max - d_min) for x in D]
    return dict(zip(names, _shift_to_mean(raw, weights, t, lo, hi), strict=True))


def owl_ratios(
    block_scores: Mapping[str, Sequence[Tensor]],
    param_counts: Mapping[str, int],
    target: float,
    M: float = 5.0,
    lam: float = 0.08,
) -> dict[str, float]:
    """OWL per-block sparsity from each block's Wanda score tensors (block name -> [scores])."""
    D = {name: outlier_ratio(scores, M) for name, scores in block_scores.items()}
    return owl_ratios_from_outliers(D, param_counts, target, lam)
