"""0/1 knapsack and budget maths for LongCodeZip's fine stage (Shi et al. 2025, "LongCodeZip:
Compress Long Context for Code Language Models", arXiv 2510.00446). Pure functions, no model.

- :func:`knapsack_exact`: dynamic programming over integer capacities, O(n * capacity).
- :func:`knapsack_greedy`: by value / weight, then the better of that and the best single item.
- :func:`knapsack`: exact when ``n * (capacity + 1) <= max_cells`` (the paper: <= 100 blocks and a
  budget <= 2,000 tokens, i.e. 200k cells), greedy otherwise.
- :func:`find_spikes` / :func:`split_blocks`: perplexity-spike block boundaries.
- :func:`allocate_budget`: the adaptive per-function budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from prunekit.errors import ConfigError


def _check(values: Sequence[float], weights: Sequence[int], capacity: int) -> None:
    if len(values) != len(weights):
        raise ConfigError(f"values ({len(values)}) and weights ({len(weights)}) differ in length.")
    if any(int(w) != w or w < 0 for w in weights):
        raise ConfigError(f"weights must be non-negative integers, got {list(weights)}.")
    if int(capacity) != capacity or capacity < 0:
        raise ConfigError(f"capacity={capacity} is invalid; valid: an int >= 0.")


def knapsack_exact(values: Sequence[float], weights: Sequence[int], capacity: int) -> list[int]:
    """Indices (sorted) of a subset maximising total value with total weight <= capacity."""
    _check(values, weights, capacity)
    capacity = int(capacity)
    n = len(values)
    best = np.zeros(capacity + 1)
    take = np.zeros((n, capacity + 1), dtype=bool)
    for i, (v, w) in enumerate(zip(values, weights, strict=True)):
        w = int(w)
        if v <= 0 or w > capacity:
            continue
        candidate = best.copy()
        candidate[w:] = best[: capacity + 1 - w] + v
        better = candidate > best + 1e-12
        take[i] = better
        best = np.where(better, candidate, best)
    chosen, c = [], capacity
    for i in range(n - 1, -1, -1):
        if take[i, c]:
            chosen.append(i)
            c -= int(weights[i])
    return sorted(chosen)


def knapsack_greedy(values: Sequence[float], weights: Sequence[int], capacity: int) -> list[int]:
    """Greedy by value density (skipping items that do not fit); at least half the optimum."""
    _check(values, weights, capacity)
    order = sorted((i for i in range(len(values)) if values[i] > 0),
                   key=lambda i: (-(values[i] / weights[i]) if weights[i] else -math.inf, i))
    chosen, used = [], 0
    for i in order:
        if used + weights[i] <= capacity:
            chosen.append(i)
            used += weights[i]
    fitting = [i for i in order if weights[i] <= capacity]
    if fitting:
        single = max(fitting, key=lambda i: values[i])
        if values[single] > sum(values[i] for i in chosen):
            chosen = [single]
    return sorted(chosen)


def knapsack(values: Sequence[float], weights: Sequence[int], capacity: int,
             max_cells: int = 200_000) -> list[int]:
    """Exact DP when ``len(values) * (capacity + 1) <= max_cells``, greedy otherwise."""
    if len(values) * (int(capacity) + 1) <= max_cells:
        return knapsack_exact(values, weights, capacity)
    return knapsack_greedy(values, weights, capacity)


def find_spikes(scores: Sequence[float], k: float = 1.0, window: int = 3) -> list[int]:
    """Indices ``i`` whose score exceeds ``mean + k * std`` of its finite neighbours within ``window``
    lines on each side (``i`` excluded; at least two neighbours needed). NaN scores never spike."""
    out = []
    for i, value in enumerate(scores):
        if not math.isfinite(value):
            continue
        lo, hi = max(0, i - window), min(len(scores), i + window + 1)
        neighbours = [s for j, s in enumerate(scores[lo:hi], start=lo) if j != i and math.isfinite(s)]
        if len(neighbours) < 2:
            continue
        mean = sum(neighbours) / len(neighbours)
        std = math.sqrt(sum((s - mean) ** 2 for s in neighbours) / len(neighbours))
        if value > mean + k * std and value > mean:
            out.append(i)
    return out


def split_blocks(scores: Sequence[float], k: float = 1.0, window: int = 3,
                 max_block_lines: int | None = None) -> list[tuple[int, int]]:
    """Blocks ``[start, end)`` of line indices: a spike line starts a new block; blocks longer than
    ``max_block_lines`` are cut into equal parts."""
    n = len(scores)
    if n == 0:
        return []
    starts = sorted({0, *find_spikes(scores, k, window)})
    blocks = []
    for a, b in zip(starts, [*starts[1:], n], strict=True):
        parts = 1 if not max_block_lines else math.ceil((b - a) / max_block_lines)
        cuts = [a + round(j * (b - a) / parts) for j in range(parts + 1)]
        blocks.extend((x, y) for x, y in zip(cuts, cuts[1:], strict=False) if y > x)
    return blocks


def allocate_budget(sizes: Sequence[int], scores: Sequence[float], total: int, beta: float = 0.5) -> list[int]:
    """Split ``total`` tokens over items of ``sizes`` tokens: item i wants ``size_i * r * (1 + beta *
    (2 * norm_i - 1))`` with r = total / sum(sizes) and norm_i its min-max normalised score; shares are
    capped at the item size and rescaled until they sum to ``min(total, sum(sizes))``."""
    if len(sizes) != len(scores):
        raise ConfigError(f"sizes ({len(sizes)}) and scores ({len(scores)}) differ in length.")
    if not 0 <= beta <= 1:
        raise ConfigError(f"beta={beta} is invalid; valid: a float in [0, 1].")
    size_sum = sum(sizes)
    if not sizes or size_sum == 0:
        return [0] * len(sizes)
    total = max(0, min(int(total), size_sum))
    lo, hi = min(scores), max(scores)
    norm = [(s - lo) / (hi - lo) if hi > lo else 0.5 for s in scores]
    rate = total / size_sum
    want = [size * rate * (1 + beta * (2 * x - 1)) for size, x in zip(sizes, norm, strict=True)]
    share = [0.0] * len(sizes)
    free = list(range(len(sizes)))
    remaining = float(total)
    while free and remaining > 1e-9:
        scale = remaining / max(sum(want[i] for i in free), 1e-12)
        capped = [i for i in free if want[i] * scale >= sizes[i]]
        if not capped:
            for i in free:
                share[i] = want[i] * scale
            break
        for i in capped:
            share[i] = float(sizes[i])
            remaining -= sizes[i]
        free = [i for i in free if i not in capped]
        if free and sum(want[i] for i in free) <= 1e-12:  # zero-want items share what is left
            want = [want[i] if i not in free else float(sizes[i]) for i in range(len(sizes))]
    floors = [min(sizes[i], math.floor(s)) for i, s in enumerate(share)]
    leftover = total - sum(floors)
    for i in sorted(range(len(sizes)), key=lambda j: -(share[j] - floors[j])):
        if leftover <= 0:
            break
        if floors[i] < sizes[i]:
            floors[i] += 1
            leftover -= 1
    return floors
