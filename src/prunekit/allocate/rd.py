"""Rate-distortion allocation: Xu et al. ICCV 2023, "Efficient Joint Optimization of
Layer-Adaptive Weight Pruning in Deep Neural Networks".

Given per-layer output distortion curves D_l(a) measured by pruning only layer l at
amounts a (additivity assumption: D ~ sum_l D_l(a_l)), pick one amount per layer to
minimise sum_l D_l(a_l) subject to pruning ``round(target * total)`` weights in total.

Budget quantisation: one budget unit is ``u = ceil(total / resolution)`` weights (so the
DP is exact in weights when ``total <= resolution``). Layer l at grid amount a_j prunes
p_lj = round(a_j * N_l) weights and costs floor(p_lj / u) units; the DP (knapsack over
layers, states = units pruned so far, saturating at the budget B = ceil(P / u)) finds
the grid choice with minimum distortion among those costing >= B units. Because floor
under-counts, that choice prunes >= P = round(target * total) weights.

Exact fix-up: the excess E = sum_l p_l - P >= 0 weights is given back by pruning fewer
weights in the layer(s) where that lowers the (linearly interpolated) distortion the
most, preferring one layer that can absorb all of E. The fixed layer's ratio is p'/N_l,
off the grid. Result: sum_l round(r_l * N_l) == round(target * total) exactly, with
``round`` as in ``prunekit.core.patterns.num_pruned``.
"""

import bisect
import math
from collections.abc import Mapping
from numbers import Integral

import torch
from torch import Tensor

from prunekit.core.patterns import check_sparsity


def _prepare(curves: Mapping[str, Tensor], amounts: Tensor, param_counts: Mapping[str, int]):
    names = list(curves)
    if not names:
        raise ValueError("curves must name at least one layer, got an empty mapping")
    if set(param_counts) != set(names):
        raise ValueError(
            f"param_counts keys must match the curves {sorted(names)}, got {sorted(param_counts)}"
        )
    grid = torch.as_tensor(amounts, dtype=torch.float64)
    if grid.ndim != 1 or grid.numel() < 1:
        raise ValueError(f"amounts must be a non-empty 1-D grid, got shape {tuple(grid.shape)}")
    a = [float(x) for x in torch.as_tensor(amounts).tolist()]
    if a[0] != 0.0 or a[-1] >= 1.0 or any(y <= x for x, y in zip(a, a[1:], strict=False)):
        raise ValueError(f"amounts must be strictly increasing from 0 with all values < 1, got {a}")
    D = []
    for n in names:
        c = torch.as_tensor(curves[n], dtype=torch.float64).reshape(-1)
        if c.numel() != len(a) or not torch.isfinite(c).all():
            raise ValueError(
                f"curves[{n!r}] must hold {len(a)} finite values (one per amount), got {c.tolist()}"
            )
        D.append([float(x) for x in c])
    N = [param_counts[n] for n in names]
    if any(isinstance(x, bool) or not isinstance(x, Integral) or x < 1 for x in N):
        raise ValueError(f"param_counts must be positive integers, got {dict(param_counts)}")
    return names, a, D, [int(x) for x in N]


def _knapsack(D: list[list[float]], cost: list[list[int]], budget: int) -> list[int]:
    """Grid index per layer minimising sum D subject to sum cost >= budget (saturating DP)."""
    n_amounts, n_states = len(D[0]), budget + 1
    states = torch.arange(n_states)
    flat_id = torch.arange(n_amounts * n_states).view(n_amounts, n_states)  # j * n_states + s
    big = n_amounts * n_states
    dp = torch.full((n_states,), math.inf, dtype=torch.float64)
    dp[0] = 0.0
    choices = []
    for D_l, c_l in zip(D, cost, strict=True):
        cand = dp[None, :] + torch.tensor(D_l, dtype=torch.float64)[:, None]  # (A, S)
        dest = (states[None, :] + torch.tensor(c_l)[:, None]).clamp(max=budget)  # (A, S)
        new = torch.full((n_states,), math.inf, dtype=torch.float64)
        new.scatter_reduce_(0, dest.reshape(-1), cand.reshape(-1), "amin")
        hit = (cand == new[dest]) & torch.isfinite(cand)
        code = torch.where(hit, flat_id, big)  # first (lowest amount, lowest state) among ties
        best = torch.full((n_states,), big, dtype=torch.long)
        best.scatter_reduce_(0, dest.reshape(-1), code.reshape(-1), "amin")
        choices.append(best)
        dp = new
    if not math.isfinite(float(dp[budget])):
        raise ValueError("no combination of grid amounts reaches the budget")
    picks, s = [], budget
    for best in reversed(choices):
        code = int(best[s])
        picks.append(code // n_states)
        s = code % n_states
    return picks[::-1]


def _interp(a: list[float], D_l: list[float], x: float) -> float:
    """Piecewise-linear D_l(x) on the grid ``a`` (linear extrapolation just past the ends)."""
    if len(a) == 1:
        return D_l[0]
    j = min(max(bisect.bisect_right(a, x) - 1, 0), len(a) - 2)
    t = (x - a[j]) / (a[j + 1] - a[j])
    return D_l[j] + t * (D_l[j + 1] - D_l[j])


def rd_grid_solution(
    curves: Mapping[str, Tensor],
    amounts: Tensor,
    param_counts: Mapping[str, int],
    target: float,
    *,
    resolution: int = 10_000,
) -> dict[str, float]:
    """DP step only: grid amount per layer (before the exact fix-up of :func:`rd_ratios`)."""
    names, a, D, N = _prepare(curves, amounts, param_counts)
    picks, _ = _solve(a, D, N, target, resolution)
    return {n: a[j] for n, j in zip(names, picks, strict=True)}


def _solve(a: list[float], D: list[list[float]], N: list[int], target: float, resolution: int):
    t = check_sparsity(target, "target")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be an integer >= 1, got {resolution!r}")
    total = sum(N)
    P = round(t * total)  # weights to prune
    counts = [[round(x * n) for x in a] for n in N]  # p_lj
    if sum(c[-1] for c in counts) < P:
        max_s = sum(c[-1] for c in counts) / total
        raise ValueError(f"target={t} is above the largest sparsity the amounts grid reaches, {max_s:.6f}")
    unit = -(-total // resolution)  # ceil(total / resolution)
    budget = -(-P // unit)  # ceil(P / unit)
    cost = [[p // unit for p in c] for c in counts]
    if sum(c[-1] for c in cost) < budget:
        raise ValueError(f"target={t} is too close to the grid's largest amount at resolution={resolution}; "
                         f"raise resolution")
    return _knapsack(D, cost, budget), (counts, P)


def rd_ratios(
    curves: Mapping[str, Tensor],
    amounts: Tensor,
    param_counts: Mapping[str, int],
    target: float,
    *,
    resolution: int = 10_000,
) -> dict[str, float]:
    """Per-layer sparsity minimising sum_l D_l(a_l) with exactly round(target*total) pruned.

    Args:
        curves: layer name -> distortion D_l at each of ``amounts`` (A,), e.g. output MSE.
        amounts: (A,) strictly increasing grid starting at 0, all < 1 (e.g. 0, 0.05, ..., 0.95).
        param_counts: layer name -> number of prunable weights N_l.
        target: overall sparsity in [0, 1).
        resolution: max number of DP budget units (see module docstring).

    Returns layer name -> ratio r_l with sum_l round(r_l * N_l) == round(target * sum N_l).
    """
    names, a, D, N = _prepare(curves, amounts, param_counts)
    picks, (counts, P) = _solve(a, D, N, target, resolution)
    pruned = [counts[l][j] for l, j in enumerate(picks)]
    ratios = [a[j] for j in picks]
    excess = sum(pruned) - P
    while excess > 0:  # give back weights where it helps (or hurts) the distortion least
        best = None
        for l, p in enumerate(pruned):
            if p == 0:
                continue
            take = min(excess, p)
            delta = _interp(a, D[l], (p - take) / N[l]) - _interp(a, D[l], ratios[l])
            key = (take < excess, delta, l)
            best = key if best is None or key < best else best
        _, _, l = best
        take = min(excess, pruned[l])
        pruned[l] -= take
        ratios[l] = pruned[l] / N[l]
        excess -= take
    return dict(zip(names, ratios, strict=True))
